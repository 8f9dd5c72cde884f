"""Entry points that need an optional extra say so in one line, up front, and never with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fdrouter.extras import EXTRAS, MissingExtra, missing, require

# Runs ``code`` in a fresh interpreter where the named modules cannot be imported, as in an
# install without the extra (sys.modules[name] = None makes both import and find_spec fail).
_BLOCK = "import sys\nfor name in {names!r}: sys.modules[name] = None\n"


def _run_without(names: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK.format(names=names) + code],
                          capture_output=True, text=True, timeout=120)


def test_fdrouter_simulate_without_the_sim_extra_exits_2_with_one_line_naming_the_install_command():
    code = ("from fdrouter.cli import main\n"
            "import fdrouter.sim.simulator as e\n"
            "e.Simulator.run = lambda self: sys.exit('the simulation ran')\n"  # must not get this far
            "sys.exit(main(['simulate', '--requests', '100000']))\n")
    out = _run_without(("numpy", "pandas"), code)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "pip install 'fdrouter[sim]'" in lines[0] and "numpy" in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_simulate_called_from_python_without_the_extra_raises_missing_extra_before_running():
    code = ("from fdrouter.extras import MissingExtra\n"
            "from fdrouter.sim import simulate\n"
            "try:\n    simulate(requests=10)\n"
            "except MissingExtra as exc:\n    print(exc.install)\n")
    out = _run_without(("pandas",), code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pip install 'fdrouter[sim]'"


def test_the_router_itself_needs_no_extra():
    code = "import fdrouter, fdrouter.cli, fdrouter.server; print('ok')\n"
    out = _run_without(tuple(sorted({m for mods in EXTRAS.values() for m in mods})), code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_missing_extra_renders_in_ipython_as_its_message_alone():
    exc = MissingExtra("the notebooks", "notebooks", ["matplotlib"])
    assert exc._render_traceback_() == [
        "MissingExtra: the notebooks needs the 'notebooks' extra (missing: matplotlib); "
        "install it with: pip install 'fdrouter[notebooks]'"
    ]


def test_require_passes_when_the_extra_is_installed_and_refuses_unknown_extras():
    assert missing("sim") == []
    require("sim", what="this test")
    with pytest.raises(ValueError, match="unknown extra 'nope'"):
        missing("nope")


def test_the_benchmark_without_the_project_installed_says_how_to_run_it(tmp_path):
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_router.py"
    out = _run_without(("aiohttp",), f"import runpy; runpy.run_path({str(bench)!r}, run_name='__main__')\n")
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "bench_router: error: aiohttp is not installed; run `make bench` (or `pip install -e '.[speed]'` first)"
    ]
