"""Servers made on demand and cleaned up on exit."""

from __future__ import annotations

import contextlib

import aiohttp
import pytest

from fdrouter.config_loader import parse_worker_urls
from fdrouter.server import RouterServer
from fdrouter.testing import MockBackend, closed_port, wait_until
from fdrouter.testing.factories import RouterMaker, leaks, mock_backends, routers

from .helpers import connection_refused


async def test_mock_backends_closes_everything_it_made_last_first() -> None:
    closed: list[str] = []
    # ports held past the exit, so that refused below can only mean the backends stopped listening
    with contextlib.ExitStack() as ports:
        async with mock_backends() as make:
            made = [await make(model=name, port=ports.enter_context(closed_port()))
                    for name in ("first", "second", "third")]
            for backend in made:
                original_close = backend.close

                async def close(backend: MockBackend = backend, original_close=original_close) -> None:
                    closed.append(backend.model)
                    await original_close()

                backend.close = close  # type: ignore[method-assign]
        assert closed == ["third", "second", "first"]
        assert all(connection_refused(backend.port) for backend in made)


async def test_routers_are_closed_on_exit_after_a_clean_leak_check() -> None:
    with closed_port() as port:  # held past the exit: refused can only mean the router stopped
        async with routers() as make:
            server = await make(port=port)
            async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as response:
                assert response.status == 200
            assert leaks(server) == []
        assert connection_refused(port)


async def leaky_router(make: RouterMaker, backend: MockBackend, port: int) -> RouterServer:
    """A router on `port` with `backend` registered, counting one request in flight that never came back."""
    server = await make(port=port, instances=parse_worker_urls([backend.url]))
    assert await wait_until(lambda: len(server.router.registry.all()) == 1)
    server.router.registry.all()[0].in_flight += 1
    return server


async def test_routers_name_what_a_router_still_counts_and_close_it_anyway(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    with closed_port() as port, pytest.raises(AssertionError, match=r"leaked: 1 requests still counted in flight"):
        try:
            async with routers(leak_timeout=0.1) as make:
                await leaky_router(make, backend, port)
        finally:
            assert connection_refused(port)


async def test_routers_skip_the_leak_check_when_the_body_failed(mock_backend_factory) -> None:
    # the body's own error is the one to see, not the leak it left on its way out
    backend = await mock_backend_factory()
    with closed_port() as port, pytest.raises(KeyError, match="the test's own failure"):
        try:
            async with routers(leak_timeout=0.1) as make:
                await leaky_router(make, backend, port)
                raise KeyError("the test's own failure")
        finally:
            assert connection_refused(port)
