"""pytest plugin handing out started MockBackends, in the style of aiohttp's ``aiohttp_server``.

Register it in the root conftest: ``pytest_plugins = ["fdrouter.testing.pytest_plugin"]``.
Fixtures: ``mock_backend_factory`` (``await make(role="decode", ...)`` -> started MockBackend,
all closed at teardown, last first) and ``free_port``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from fdrouter.testing.mock_backend import MockBackend
from fdrouter.testing.mock_backend import free_port as _free_port

__all__ = ["MockBackendMaker", "free_port", "mock_backend_factory", "mock_backends"]

MockBackendMaker = Callable[..., Awaitable[MockBackend]]


@contextlib.asynccontextmanager
async def mock_backends() -> AsyncIterator[MockBackendMaker]:
    """Yield ``make(**kwargs)``, which starts a MockBackend; on exit close all it made, last first.

    The fixture is a thin wrapper over this, so notebooks and benchmarks get the same cleanup.
    """
    # AsyncExitStack unwinds last first and keeps closing the rest if one close() fails.
    async with contextlib.AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> MockBackend:
            return await stack.enter_async_context(MockBackend(**kwargs))

        yield make


@pytest_asyncio.fixture
async def mock_backend_factory() -> AsyncIterator[MockBackendMaker]:
    """``await mock_backend_factory(role=..., behavior=...)`` -> a started MockBackend, closed after the test."""
    async with mock_backends() as make:
        yield make


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free when the fixture ran."""
    return _free_port()
