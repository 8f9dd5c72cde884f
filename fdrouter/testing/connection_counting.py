"""Wire-level accounting for the mock backend: real TCP connections, as aiohttp's protocol sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["ConnectionCounts", "CountingServer"]


class ConnectionCounts(Protocol):
    """Where the counts go (a MockBackend)."""

    connections_accepted: int
    connections_open: int


class CountingServer(web.Server):
    """aiohttp's low-level server, counting connections into `counts` as they open and close."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        counts: ConnectionCounts,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._counts = counts
        # Our own view of open transports: aiohttp's dict is cleared at shutdown, before they close.
        self.open_transports: dict[RequestHandler, asyncio.Transport] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open_transports[handler] = transport
        self._counts.connections_accepted += 1
        self._counts.connections_open += 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        # aiohttp calls this once per connection (it drops its manager reference right after).
        if self.open_transports.pop(handler, None) is not None:
            self._counts.connections_open -= 1
