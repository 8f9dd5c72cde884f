"""The notebooks in notebooks/: stored clean, and each runs end to end to its asserting last cell.

Running them is slow (a kernel each, tens of seconds), so it is marked ``once``. The kernel
is this interpreter's, whatever kernelspecs the machine has: a ``python3`` spec is written
to a temporary directory (ipykernel puts ``sys.executable`` in its argv) and is the only
one the kernel manager can see.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_SECS = 300


def _ids(path: Path) -> str:
    return path.stem


def _kernel_manager(kernel_dir: Path) -> AsyncKernelManager:
    """A manager for a ``python3`` kernel run by this interpreter, plotting off-screen (Agg)."""
    write_kernel_spec(str(kernel_dir / "python3"), overrides={"env": {"MPLBACKEND": "Agg"}})
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _execute(nb: nbformat.NotebookNode, tmp_path: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path / "kernels"),
        timeout=CELL_TIMEOUT_SECS,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # cwd of the kernel
    )
    return client.execute()


def test_the_notebooks_are_found():
    # guards the parametrised tests below, which an empty list would silently skip
    names = {p.name for p in NOTEBOOKS}
    assert {"01_policy_playground.ipynb", "02_live_router.ipynb", "03_pd_ratio.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_is_stored_without_outputs_and_ends_by_asserting(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "no code cells"
    for cell in code:
        assert cell.outputs == [], f"stored with outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, f"stored with an execution count: {cell.source[:60]!r}"
    assert nb.cells[0].cell_type == "markdown", "should open by saying what question it answers"
    last = nb.cells[-1]
    assert last.cell_type == "code" and "assert " in last.source, "the last cell must assert the headline"


@pytest.mark.once
@pytest.mark.timeout(120)
def test_notebook_kernel_is_this_interpreter(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys, matplotlib\nprint(sys.executable, os.getcwd(), matplotlib.get_backend())"
    )])
    out = _execute(nb, tmp_path).cells[0].outputs
    executable, cwd, backend = out[0]["text"].split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(cwd).resolve() == NOTEBOOK_DIR
    assert backend.lower() == "agg"


@pytest.mark.once
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_to_its_headline_assert(path: Path, tmp_path: Path):
    # A failing cell (the last one asserts the notebook's headline) raises CellExecutionError.
    _execute(nbformat.read(path, as_version=4), tmp_path)
