"""The package's contract with its users: typed, and every module says what it exports."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import compat
import fdrouter

ROOT = Path(__file__).resolve().parents[1]
# run as scripts, not imported: importing them would start a router or a CLI
_ENTRY_POINTS = {"fdrouter.__main__", "fdrouter.testing.__main__", "compat.__main__"}


def _modules() -> list[str]:
    names = []
    for package in (fdrouter, compat):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in _ENTRY_POINTS:
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_all_and_every_name_in_it_exists(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list) and exported, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


def test_the_package_ships_py_typed_so_type_checkers_read_its_annotations():
    assert (Path(fdrouter.__file__).parent / "py.typed").is_file()


def test_the_top_level_exports_what_a_model_server_needs_to_register():
    for name in ("RegistrationError", "register_instance", "keep_registered", "RouterServer", "RouterConfig"):
        assert name in fdrouter.__all__
