"""The one place compat imports paddle, lazily, and hears when someone else does.

The router must never pay for (or need) paddle, so nothing here imports it at import
time. Two things must still happen the moment paddle is imported, whoever imports it:
a platform profile's masks land (``compat.profiles``), and compat's public functions are
marked for ``paddle.jit`` (``compat.probe``). ``when_imported`` arranges that with an
import hook that sits first on ``sys.meta_path`` only until paddle has been imported, or
for as long as a profile hides modules.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from compat.errors import PaddleMissing

logger = logging.getLogger("compat")

INSTALL_HINT = "install it with: pip install 'fdrouter[paddle]'"

_lock = threading.RLock()
_pending: list[Callable[[ModuleType], None]] = []
_blocked: frozenset[str] = frozenset()


def load() -> ModuleType:
    """Import and return paddle, or raise PaddleMissing saying why it could not be imported."""
    try:
        import paddle
    # OSError too: a paddle wheel whose shared libraries do not load on this host is as
    # unusable as a missing one, and the caller deserves the same clear error.
    except (ImportError, OSError) as exc:
        raise PaddleMissing(
            f"paddle cannot be imported ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from exc
    return paddle


def imported() -> ModuleType | None:
    """paddle if it has been fully imported, else None (never imports it)."""
    module = sys.modules.get("paddle")
    # while paddle's own __init__ runs, the import hook is the one to act
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def when_imported(callback: Callable[[ModuleType], None]) -> None:
    """Run ``callback(paddle)`` now if paddle is imported, else right after ``import paddle`` finishes.

    A callback must not raise: it runs inside someone's ``import paddle``. Exceptions are
    logged and swallowed for that reason.
    """
    with _lock:
        paddle = imported()
        if paddle is None:
            if callback not in _pending:
                _pending.append(callback)
            _install()
            return
    _run(callback, paddle)


def block(names: frozenset[str]) -> None:
    """Make importing any of ``names`` (or their submodules) fail as on a build without them."""
    global _blocked
    with _lock:
        _blocked = names
        if names:
            _install()
        elif not _pending:
            _uninstall()


def _run(callback: Callable[[ModuleType], None], paddle: ModuleType) -> None:
    try:
        callback(paddle)
    except Exception:
        logger.exception("compat: a callback on paddle import failed: %r", callback)


def _is_blocked(fullname: str) -> bool:
    return any(fullname == name or fullname.startswith(name + ".") for name in _blocked)


class _PaddleImportHook(importlib.abc.MetaPathFinder):
    """Refuses blocked modules; wraps paddle's loader so pending callbacks run after its __init__."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if _is_blocked(fullname):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        if fullname != "paddle" or not _pending:
            return None
        spec = self._find_elsewhere(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_init = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            try:
                run_init(module)
            finally:
                # the loader becomes paddle.__loader__: leave it as we found it
                del loader.exec_module
            with _lock:
                callbacks = list(_pending)
                _pending.clear()
                if not _blocked:
                    _uninstall()
            for callback in callbacks:
                _run(callback, module)

        loader.exec_module = exec_module
        return spec

    def _find_elsewhere(self, fullname: str, path: Any, target: Any) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


_HOOK = _PaddleImportHook()


def _install() -> None:
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def _uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


__all__ = ["INSTALL_HINT", "block", "imported", "load", "when_imported"]
