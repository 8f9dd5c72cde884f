"""pytest plugin handing out started mock backends and routers, in the style of aiohttp's ``aiohttp_server``.

Register it in the root conftest: ``pytest_plugins = ["fdrouter.testing.pytest_plugin"]``.
Fixtures (each a thin wrapper over ``fdrouter.testing.factories`` / ``mock_cluster``):

- ``mock_backend_factory``: ``await make(role="decode", ...)`` -> a started MockBackend; all
  closed at teardown, last first. Each one made without a port gets one held by `closed_port`
  until teardown, so a test that closes a backend (a dead instance) keeps a port that refuses
  connections: no other process can start listening there in between and answer in its place.
- ``router_factory``: ``await make(**config)`` -> a started RouterServer on a free port, checked
  at teardown for leaks (no request in flight, no generation connection still lent out).
- ``http``: an aiohttp client session for the test.
- ``cluster``: ``await make(mixed=2)`` or ``await make(prefill=1, decode=1, splitwise=True)`` ->
  a ``Cluster``: a router from ``router_factory`` with backends from ``mock_backend_factory``
  registered.
- ``free_port``: a port number that was free (racy; prefer port 0 or ``closed_port``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from .factories import MockBackendMaker, RouterMaker, mock_backends, routers
from .mock_cluster import HTTP_TIMEOUT, ClusterMaker, cluster_maker
from .ports import free_port as _free_port

__all__ = [
    "MockBackendMaker", "cluster", "free_port", "http", "mock_backend_factory", "mock_backends", "router_factory",
]


@pytest_asyncio.fixture
async def mock_backend_factory() -> AsyncIterator[MockBackendMaker]:
    """``await mock_backend_factory(role=..., behavior=...)`` -> a started MockBackend, closed after the test."""
    async with mock_backends() as make:
        yield make


@pytest_asyncio.fixture
async def router_factory() -> AsyncIterator[RouterMaker]:
    """``await router_factory(**config)`` -> a started RouterServer on a free port, leak-checked at teardown."""
    async with routers() as make:
        yield make


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to routers and backends in a test."""
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        yield session


@pytest_asyncio.fixture
async def cluster(
    router_factory: RouterMaker, mock_backend_factory: MockBackendMaker, http: aiohttp.ClientSession
) -> AsyncIterator[ClusterMaker]:
    """``await cluster(mixed=2)`` or ``await cluster(prefill=1, decode=1, splitwise=True)``."""
    yield cluster_maker(router_factory, mock_backend_factory, http)


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free when the fixture ran; another process may take it before
    the test binds it. Prefer port 0, or `fdrouter.testing.closed_port` to hold a port race-free."""
    return _free_port()
