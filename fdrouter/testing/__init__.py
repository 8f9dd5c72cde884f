"""Test rig for fdrouter: a mock OpenAI-compatible LLM backend and a pytest plugin that hands it out.

``from fdrouter.testing import MockBackend, MockBehavior, closed_port, free_port``
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fdrouter.testing.mock_backend import MockBackend, MockBehavior, closed_port, free_port

__all__ = ["MockBackend", "MockBehavior", "closed_port", "free_port"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m fdrouter.testing.mock_backend` doesn't find the module
    # already imported by its package (runpy warns about that, and it would exist twice).
    if name in __all__:
        from fdrouter.testing import mock_backend

        return getattr(mock_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
