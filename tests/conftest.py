"""Shared fixtures: routers and clusters of mock backends on loopback, with leak checks.

Every router made by ``router_factory`` is checked at teardown: no request in flight and
no generation connection still lent out (docs/architecture.md: "Counters always come back").
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from hypothesis import HealthCheck, settings

from fdrouter import RouterConfig, RouterServer
from fdrouter.testing import MockBackend, MockBehavior

pytest_plugins = ["fdrouter.testing.pytest_plugin", "compat.pytest_profile"]

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (``make test`` runs ``ci``):
# - ci: derandomized (the same examples on every run and machine), no example database, so
#   pass or fail depends on the code alone and never on which examples a run happened to draw;
# - explore: fresh random examples on every run, the same example counts, still no database
#   (``HYPOTHESIS_PROFILE=explore make test``) -- how new failing inputs are found.
# This file is imported before any test module, so module-level ``settings(...)`` objects in the
# tests inherit the loaded profile for everything they do not set themselves.
_HYPOTHESIS_COMMON = dict(database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("explore", derandomize=False, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` (a function or a coroutine function) until true or ``timeout``; bounded,
    returns the last answer.

    The timeout only costs time when the condition never comes true, so it is generous: on a
    loaded 2-core machine what takes a millisecond can take a second, and that must not fail a test.
    """

    async def answer() -> bool:
        result = predicate()
        return bool(await result if inspect.isawaitable(result) else result)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await answer():
        if loop.time() >= deadline:
            return await answer()
        await asyncio.sleep(interval)
    return True


def _leaks(server: RouterServer) -> list[str]:
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


@pytest_asyncio.fixture
async def router_factory() -> AsyncIterator[Any]:
    """``await router_factory(**config)`` -> a started RouterServer on a free port, leak-checked at teardown."""
    servers: list[RouterServer] = []

    async def make(**config: Any) -> RouterServer:
        config.setdefault("port", 0)
        server = RouterServer(RouterConfig(**config), shutdown_timeout=2.0)
        await server.start()
        servers.append(server)
        return server

    yield make
    try:
        for server in servers:
            # a cancelled handler finishes its cleanup a moment after the client saw the error
            await wait_until(lambda s=server: not _leaks(s))
            problems = _leaks(server)
            assert not problems, f"router at {server.url} leaked: {'; '.join(problems)}"
    finally:
        for server in reversed(servers):
            await server.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to routers and backends in a test."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@dataclass
class Cluster:
    """A router with registered mock backends, as most tests need it."""

    server: RouterServer
    backends: list[MockBackend]
    http: aiohttp.ClientSession
    prefill: list[MockBackend] = field(default_factory=list)
    decode: list[MockBackend] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    async def register(self, backend: MockBackend, **overrides: Any) -> aiohttp.ClientResponse:
        async with self.http.post(self.url + "/register", json=backend.register_info(**overrides)) as resp:
            await resp.read()
            return resp

    async def chat(self, content: str = "hello", **body: Any) -> tuple[int, Any]:
        payload = {"model": "mock-model", "messages": [{"role": "user", "content": content}], **body}
        async with self.http.post(self.url + "/v1/chat/completions", json=payload) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


@pytest_asyncio.fixture
async def cluster(router_factory, mock_backend_factory, http) -> AsyncIterator[Any]:
    """``await cluster(mixed=2)`` or ``await cluster(prefill=1, decode=1, splitwise=True)``."""

    async def make(*, mixed: int = 0, prefill: int = 0, decode: int = 0, behavior: dict | None = None,
                   **config: Any) -> Cluster:
        if config.get("splitwise"):
            roles = ["prefill"] * prefill + ["decode"] * decode
        else:
            roles = ["mixed"] * (mixed or 1)
        backends = [await mock_backend_factory(role=r, behavior=MockBehavior(**(behavior or {}))) for r in roles]
        server = await router_factory(**config)
        c = Cluster(server, backends, http,
                    prefill=[b for b in backends if b.role == "prefill"],
                    decode=[b for b in backends if b.role == "decode"])
        for backend in backends:
            resp = await c.register(backend)
            assert resp.status == 200, f"registering {backend.url} failed with {resp.status}"
        return c

    yield make
