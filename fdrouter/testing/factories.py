"""Servers made on demand and cleaned up on exit: mock backends, and routers checked for leaks.

``async with mock_backends() as make_backend, routers() as make_router: ...`` -- each ``make``
starts one server; on exit every one of them is closed, last made first. The pytest fixtures
(``fdrouter.testing.pytest_plugin``) are thin wrappers over these, so notebooks and benchmarks
get the same cleanup and the same leak check as the tests.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fdrouter.config import RouterConfig
from fdrouter.server import RouterServer

from .backend_server import MockBackend
from .polling import wait_until
from .ports import closed_port

__all__ = ["LEAK_TIMEOUT", "MockBackendMaker", "RouterMaker", "leaks", "mock_backends", "routers"]

MockBackendMaker = Callable[..., Awaitable[MockBackend]]
RouterMaker = Callable[..., Awaitable[RouterServer]]

LEAK_TIMEOUT = 10.0
"""How long ``routers()`` lets counters settle: a cancelled handler finishes its cleanup a moment
after the client saw the error, and a loaded machine stretches that moment."""


@contextlib.asynccontextmanager
async def mock_backends() -> AsyncIterator[MockBackendMaker]:
    """Yield ``make(**kwargs)``, which starts a MockBackend; on exit close all it made, last first.

    Without a ``port`` (or with 0), a backend on an IP address listens on a port held by
    `closed_port` until the exit: after ``close()`` it refuses connections, as a dead instance's
    port should, instead of being free for whichever process binds next.
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


def leaks(server: RouterServer) -> list[str]:
    """What a router still counts that it should not once its clients are done (docs/architecture.md:
    "Counters always come back"): requests or tokens in flight, generation connections lent out."""
    router = server.router
    problems = []
    if router.in_flight() != 0:
        problems.append(f"{router.in_flight()} requests still counted in flight")
    tokens = sum(s.in_flight_tokens for s in router.registry.all())
    if tokens != 0:
        problems.append(f"{tokens} tokens still counted in flight")
    if router.upstream.acquired_connections() != 0:
        problems.append(f"{router.upstream.acquired_connections()} generation connections still acquired")
    return problems


def _settled(server: RouterServer) -> bool:
    return not leaks(server)


@contextlib.asynccontextmanager
async def routers(*, leak_timeout: float = LEAK_TIMEOUT) -> AsyncIterator[RouterMaker]:
    """Yield ``make(**config)``, which starts a RouterServer (``RouterConfig(**config)``, port 0
    unless given) on loopback; on exit close them all, last first.

    If the body ended without an exception, every router is first checked for `leaks` (given
    up to `leak_timeout` seconds to settle) and AssertionError names what leaked.
    """
    servers: list[RouterServer] = []

    async def make(**config: Any) -> RouterServer:
        config.setdefault("port", 0)
        server = RouterServer(RouterConfig(**config), shutdown_timeout=2.0)
        await server.start()
        servers.append(server)
        return server

    try:
        yield make
        problems = []
        for server in servers:
            await wait_until(functools.partial(_settled, server), timeout=leak_timeout)
            found = leaks(server)
            if found:
                problems.append(f"router at {server.url} leaked: {'; '.join(found)}")
        if problems:
            raise AssertionError("\n".join(problems))
    finally:
        for server in reversed(servers):
            await server.close()
