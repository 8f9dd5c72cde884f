"""Writing an instance's answer back to the client: streamed (SSE) or buffered.

The relay passes bytes through: no JSON is decoded or re-encoded on the way back.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from aiohttp import web

from . import jsonutil
from .errors import ClientDisconnected, RouterError
from .generation_pool import Response

_SSE = "text/event-stream"


class ClientSink:
    """The client side of one request; remembers whether the answer has started."""

    __slots__ = ("request", "response", "finished", "headers", "first_byte_at", "instance")

    def __init__(self, request: web.Request, headers: dict[str, str] | None = None) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.finished = False
        self.headers = headers or {}
        """Extra headers for the client's answer (X-Request-Id)."""
        self.first_byte_at: float | None = None
        """Event-loop time the answer's first byte went to the client (time to first token)."""
        self.instance = ""
        """URL of the instance whose answer is relayed (set by the router; a metrics label)."""

    @property
    def prepared(self) -> bool:
        """Whether the status line has gone out: after that, errors travel in-band."""
        return self.response is not None and self.response.prepared

    async def relay(self, upstream: Response) -> web.StreamResponse:
        """Copy a 2xx upstream answer to the client; an SSE answer chunk by chunk."""
        content_type = upstream.header("content-type", "application/json")
        loop = asyncio.get_running_loop()
        if upstream.content_type != _SSE:
            body = await upstream.read()
            self.finished = True
            self.first_byte_at = loop.time()
            return web.Response(
                body=body, status=upstream.status, headers={"Content-Type": content_type, **self.headers}
            )
        async with aclosing(upstream.iter_chunks()) as chunks:
            # Nothing goes to the client before the first chunk is here: a failure until then
            # leaves the client untouched, so the router may still retry elsewhere.
            first = await anext(chunks, None)
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                         **self.headers},
            )
            self.response = response
            try:
                await response.prepare(self.request)
                self.first_byte_at = loop.time()
                if first is not None:
                    await response.write(first)
                async for chunk in chunks:
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError as exc:  # includes aiohttp's ClientConnectionResetError on writes
                raise ClientDisconnected("client disconnected during the stream") from exc
        self.finished = True
        return response

    async def stream_error(self, error: RouterError) -> web.StreamResponse:
        """End a started SSE stream with one OpenAI-shaped error event, so it is never silently cut."""
        assert self.response is not None
        try:
            await self.response.write(b"data: " + jsonutil.dumps(error.to_dict()) + b"\n\n")
            await self.response.write_eof()
        except ConnectionResetError:
            pass  # the client is gone too: nobody left to tell
        return self.response


__all__ = ["ClientSink"]
