"""What the router writes an answer to: the client side of one generation request.

Two implementations: ``relay.ClientSink`` (aiohttp's request and response objects) and the
lean front end's ``front_sink.FrontSink`` (bytes straight to the transport). ``relay`` copies a
whole answer; ``open_stream``/``send``/``end_stream`` write a stream piece by piece, for a stream
that outlives one upstream answer (``pd_relay``: a PD request rescheduled mid-stream).
"""

from __future__ import annotations

from typing import Protocol

from .errors import RouterError
from .generation_pool import Response


class Sink(Protocol):
    """The client side of one generation request, as the router and the service use it."""

    instance: str
    """URL of the instance whose answer is relayed (set by the router; a metrics label)."""
    first_byte_at: float | None
    """Event-loop time the answer's first byte went to the client."""

    @property
    def prepared(self) -> bool:
        """Whether the status line has gone out: after that, errors travel in-band."""

    @property
    def finished(self) -> bool:
        """Whether the whole answer has been handed to the client."""

    async def relay(self, upstream: Response) -> int:
        """Copy a 2xx upstream answer to the client; returns the status sent."""

    async def open_stream(self, upstream: Response) -> None:
        """Send an SSE answer's status line and headers (``upstream``'s, relayed); the write watchdog starts."""

    async def send(self, data: bytes) -> None:
        """Send one piece of the open stream (``ClientDisconnected`` once the client is gone)."""

    async def end_stream(self) -> int:
        """End the open stream (``finished``); returns its status."""

    async def stream_error(self, error: RouterError) -> None:
        """End a started answer with one OpenAI-shaped error event."""


__all__ = ["Sink"]
