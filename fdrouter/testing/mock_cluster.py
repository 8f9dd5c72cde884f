"""A router with registered mock backends, as most tests and the live notebooks need it.

In a notebook or a script::

    from fdrouter import testing
    async with testing.cluster(mixed=2, behavior={"output_tokens": 16}, policy="cache_aware") as c:
        status, answer = await c.chat("hello")
        c.server.router.in_flight(), [b.requests_total for b in c.backends]

On exit the client session, the router (checked for leaks, see ``factories.routers``) and the
backends are closed, in that order. ``clusters()`` yields a maker for several clusters at once;
the pytest fixture ``cluster`` is that maker over the test's own fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fdrouter.server import RouterServer

from .backend_server import MockBackend
from .behavior import MockBehavior
from .factories import MockBackendMaker, RouterMaker, mock_backends, routers

__all__ = ["Cluster", "ClusterMaker", "cluster", "cluster_maker", "clusters"]

ClusterMaker = Callable[..., Awaitable["Cluster"]]

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
"""Bounds every request of the cluster's client session: nothing hangs."""


@dataclass
class Cluster:
    """A router (``server``) with registered mock ``backends`` and a client session (``http``)."""

    server: RouterServer
    backends: list[MockBackend]
    http: aiohttp.ClientSession
    prefill: list[MockBackend] = field(default_factory=list)
    decode: list[MockBackend] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The router's base URL."""
        return self.server.url

    async def register(self, backend: MockBackend, **overrides: Any) -> aiohttp.ClientResponse:
        """``POST /register`` `backend` (its ``register_info(**overrides)``); the answered response."""
        async with self.http.post(self.url + "/register", json=backend.register_info(**overrides)) as resp:
            await resp.read()
            return resp

    async def chat(self, content: str = "hello", **body: Any) -> tuple[int, Any]:
        """One non-streaming chat completion through the router: (status, JSON body or text)."""
        payload = {"model": "mock-model", "messages": [{"role": "user", "content": content}], **body}
        async with self.http.post(self.url + "/v1/chat/completions", json=payload) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


def cluster_maker(
    make_router: RouterMaker, make_backend: MockBackendMaker, http: aiohttp.ClientSession
) -> ClusterMaker:
    """``make(mixed=2)`` or ``make(prefill=1, decode=1, splitwise=True)`` -> a Cluster, its backends
    registered; ``behavior`` holds MockBehavior fields (each backend gets its own MockBehavior),
    every other keyword goes to RouterConfig. Servers come from the given makers, which own them.
    """

    async def make(*, mixed: int = 0, prefill: int = 0, decode: int = 0,
                   behavior: Mapping[str, Any] | None = None, **config: Any) -> Cluster:
        if config.get("splitwise"):
            roles = ["prefill"] * prefill + ["decode"] * decode
        else:
            roles = ["mixed"] * (mixed or 1)
        backends = [await make_backend(role=r, behavior=MockBehavior(**(behavior or {}))) for r in roles]
        server = await make_router(**config)
        c = Cluster(server, backends, http,
                    prefill=[b for b in backends if b.role == "prefill"],
                    decode=[b for b in backends if b.role == "decode"])
        for backend in backends:
            resp = await c.register(backend)
            if resp.status != 200:
                raise RuntimeError(f"registering {backend.url} failed with {resp.status}")
        return c

    return make


@contextlib.asynccontextmanager
async def clusters() -> AsyncIterator[ClusterMaker]:
    """Yield a `cluster_maker`; on exit close the session, the routers (leak-checked), the backends."""
    async with contextlib.AsyncExitStack() as stack:
        make_backend = await stack.enter_async_context(mock_backends())
        make_router = await stack.enter_async_context(routers())
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=HTTP_TIMEOUT))
        yield cluster_maker(make_router, make_backend, http)


@contextlib.asynccontextmanager
async def cluster(**kwargs: Any) -> AsyncIterator[Cluster]:
    """One Cluster (arguments as `cluster_maker`'s ``make``), closed and leak-checked on exit."""
    async with clusters() as make:
        yield await make(**kwargs)
