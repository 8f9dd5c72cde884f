"""Optional extras, probed in one place: what each needs and the one-line message when it is missing.

The router itself needs only the base install. The simulator, the notebooks and the
benchmark need more (``pip install 'fdrouter[sim]'`` and so on). Every entry point that
needs an extra calls ``require`` before doing any work, so a missing package is one clear
line naming the install command -- never a traceback after a long run.

``MissingExtra`` renders without a traceback in IPython too (``_render_traceback_``), so a
notebook's first cell shows the same line.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules it provides (pyproject.toml [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {
    "sim": ("pandas", "numpy", "tqdm"),
    "notebooks": ("pandas", "numpy", "tqdm", "matplotlib"),  # what the notebooks import; Jupyter is yours
    "speed": ("uvloop", "orjson"),
}


class MissingExtra(ImportError):
    """A feature needs an optional extra that is not installed; the message says how to install it."""

    def __init__(self, what: str, extra: str, missing: list[str]) -> None:
        self.extra = extra
        self.missing = missing
        self.install = f"pip install 'fdrouter[{extra}]'"
        super().__init__(f"{what} needs the '{extra}' extra (missing: {', '.join(missing)}); "
                         f"install it with: {self.install}")

    def _render_traceback_(self) -> list[str]:  # IPython: show the message, not a traceback
        return [f"MissingExtra: {self}"]


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}") from None
    return [name for name in modules if _absent(name)]


def require(extra: str, *, what: str) -> None:
    """Raise ``MissingExtra`` unless every module of ``extra`` is installed; ``what`` names the feature."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(what, extra, absent)


def _absent(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package missing, or a blocked sys.modules entry
        return True


__all__ = ["EXTRAS", "MissingExtra", "missing", "require"]
