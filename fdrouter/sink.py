"""What the router writes an answer to: the client side of one generation request.

Two implementations: ``relay.ClientSink`` (aiohttp's request and response objects) and the
lean front end's sink (``front.py``: bytes straight to the transport).
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

    async def stream_error(self, error: RouterError) -> None:
        """End a started answer with one OpenAI-shaped error event."""


__all__ = ["Sink"]
