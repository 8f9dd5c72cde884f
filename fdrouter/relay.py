"""Writing an instance's answer back to the client: streamed (SSE) or buffered.

The relay passes bytes through: no JSON is decoded or re-encoded on the way back.
"""

from __future__ import annotations

from aiohttp import web

from . import jsonutil
from .errors import ClientDisconnected, RouterError
from .http1 import Response

_SSE = "text/event-stream"


class ClientSink:
    """The client side of one request; remembers whether the answer has started."""

    __slots__ = ("request", "response", "finished")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.finished = False

    @property
    def prepared(self) -> bool:
        """Whether the status line has gone out: after that, errors travel in-band."""
        return self.response is not None and self.response.prepared

    async def relay(self, upstream: Response) -> web.StreamResponse:
        """Copy a 2xx upstream answer to the client; an SSE answer chunk by chunk."""
        content_type = upstream.header("content-type", "application/json")
        if upstream.content_type != _SSE:
            body = await upstream.read()
            self.finished = True
            return web.Response(body=body, status=upstream.status, headers={"Content-Type": content_type})
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.response = response
        try:
            await response.prepare(self.request)
            async for chunk in upstream.iter_chunks():
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
