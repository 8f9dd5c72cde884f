"""``fdrouter.testing``: every name it exports resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import fdrouter.testing
from fdrouter.testing import mock_backend


def test_every_exported_name_resolves_to_the_object_of_its_module() -> None:
    for name in fdrouter.testing.__all__:
        assert getattr(fdrouter.testing, name) is not None
    assert fdrouter.testing.MockBackend is mock_backend.MockBackend  # the old import path still works
    assert fdrouter.testing.MockBehavior is mock_backend.MockBehavior


def test_importing_the_package_imports_none_of_its_modules() -> None:
    # else `python -m fdrouter.testing.mock_backend` would find its module imported already
    code = "import sys, fdrouter.testing; print(sorted(m for m in sys.modules if m.startswith('fdrouter.testing.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
