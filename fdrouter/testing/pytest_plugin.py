"""pytest plugin handing out started MockBackends, in the style of aiohttp's ``aiohttp_server``.

Register it in the root conftest: ``pytest_plugins = ["fdrouter.testing.pytest_plugin"]``.
Fixtures: ``mock_backend_factory`` (``await make(role="decode", ...)`` -> started MockBackend,
all closed at teardown, last first) and ``free_port``.

Each backend made without a port gets one held by `closed_port` until teardown, so a test that
closes a backend (a dead instance) keeps a port that refuses connections: no other process can
start listening there in between and answer in its place.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from fdrouter.testing.mock_backend import MockBackend, closed_port
from fdrouter.testing.mock_backend import free_port as _free_port

__all__ = ["MockBackendMaker", "free_port", "mock_backend_factory", "mock_backends"]

MockBackendMaker = Callable[..., Awaitable[MockBackend]]


@contextlib.asynccontextmanager
async def mock_backends() -> AsyncIterator[MockBackendMaker]:
    """Yield ``make(**kwargs)``, which starts a MockBackend; on exit close all it made, last first.

    Without a ``port`` (or with 0), a backend on an IP address listens on a port held by
    `closed_port` until the exit: after ``close()`` it refuses connections, as a dead instance's
    port should, instead of being free for whichever process binds next.
    The fixture is a thin wrapper over this, so notebooks and benchmarks get the same cleanup.
    """
    # AsyncExitStack unwinds last first and keeps closing the rest if one close() fails; each
    # held port is released after its backend closed.
    async with contextlib.AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> MockBackend:
            host = kwargs.get("host", "127.0.0.1")
            if not kwargs.get("port") and _is_ip(host):
                kwargs["port"] = stack.enter_context(closed_port(host))
            return await stack.enter_async_context(MockBackend(**kwargs))

        yield make


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name may resolve to several addresses: let the backend bind port 0 itself
    return True


@pytest_asyncio.fixture
async def mock_backend_factory() -> AsyncIterator[MockBackendMaker]:
    """``await mock_backend_factory(role=..., behavior=...)`` -> a started MockBackend, closed after the test."""
    async with mock_backends() as make:
        yield make


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free when the fixture ran; another process may take it before
    the test binds it. Prefer port 0, or `fdrouter.testing.closed_port` to hold a port race-free."""
    return _free_port()
