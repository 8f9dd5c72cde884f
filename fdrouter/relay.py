"""Writing an instance's answer back to the client: streamed (SSE) or buffered (response out).

The relay passes bytes through: no JSON is decoded or re-encoded on the way back, and the
instance's end-to-end headers go with them (``Content-Encoding`` included: bytes are never
delivered under an encoding they do not have). Only hop-by-hop headers and the ones the router
owns are dropped.

Two bounds protect the router from the two ends of a request:

- a buffered (non-SSE) answer larger than ``max_body`` bytes is refused with 502 instead of
  being held in memory (streams are not capped: they are relayed as they come);
- a client that stops reading: every write to it is watched, and one that makes no progress
  for ``write_timeout`` seconds aborts the client's connection. One timer per answer, re-armed
  only when it fires; a write costs one clock read.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from aiohttp import web

from . import jsonutil
from .errors import ClientDisconnected, RouterError, UpstreamError
from .generation_pool import Response

_SSE = "text/event-stream"

# RFC 9110 7.6.1 hop-by-hop headers, and those the router sets itself (framing, its own identity).
_NOT_RELAYED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length", "date", "server", "x-request-id",
})
_BUFFERED_WRITE = 64 * 1024  # a larger buffered answer is written with the watchdog on


def relayed_headers(upstream: Response) -> dict[str, str]:
    """The instance's end-to-end headers (names as the instance spelled them, lower-cased)."""
    items = upstream.header_items()
    hop = set(_NOT_RELAYED)
    for name, value in items:
        if name == "connection":  # headers named in Connection are hop-by-hop too
            hop.update(token.strip().lower() for token in value.split(","))
    out: dict[str, str] = {}
    for name, value in items:
        if name not in hop:
            out[name] = f"{out[name]}, {value}" if name in out else value
    return out


class ClientSink:
    """The client side of one request; remembers whether the answer has started."""

    __slots__ = ("request", "response", "finished", "headers", "first_byte_at", "instance", "max_body",
                 "write_timeout", "_writing_since", "_watchdog")

    def __init__(self, request: web.Request, headers: dict[str, str] | None = None, *,
                 max_body: int = 100 * 1024 * 1024, write_timeout: float = 60.0) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.finished = False
        self.headers = headers or {}
        """Extra headers for the client's answer (X-Request-Id)."""
        self.first_byte_at: float | None = None
        """Event-loop time the answer's first byte went to the client (time to first token)."""
        self.instance = ""
        """URL of the instance whose answer is relayed (set by the router; a metrics label)."""
        self.max_body = max_body
        self.write_timeout = write_timeout
        self._writing_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def prepared(self) -> bool:
        """Whether the status line has gone out: after that, errors travel in-band."""
        return self.response is not None and self.response.prepared

    async def relay(self, upstream: Response) -> int:
        """Copy a 2xx upstream answer to the client (``self.response``); returns its status."""
        headers = relayed_headers(upstream)
        headers.setdefault("content-type", "application/json")
        headers.update(self.headers)
        if upstream.content_type != _SSE:
            return await self._buffered(upstream, headers)
        async with aclosing(upstream.iter_chunks()) as chunks:
            # Nothing goes to the client before the first chunk is here: a failure until then
            # leaves the client untouched, so the router may still retry elsewhere.
            first = await anext(chunks, None)
            headers.setdefault("cache-control", "no-cache")
            headers.setdefault("x-accel-buffering", "no")
            response = self.response = web.StreamResponse(status=upstream.status, headers=headers)
            try:
                await self._prepare(response)
                if first is not None:
                    await self._write(response, first)
                async for chunk in chunks:
                    await self._write(response, chunk)
                await response.write_eof()
            except ConnectionResetError as exc:  # includes aiohttp's ClientConnectionResetError on writes
                raise ClientDisconnected("client disconnected during the stream") from exc
            finally:
                self._stop_watchdog()
        self.finished = True
        return response.status

    async def _buffered(self, upstream: Response, headers: dict[str, str]) -> int:
        parts, size = [], 0
        async for chunk in upstream.iter_chunks():
            size += len(chunk)
            if size > self.max_body:
                raise UpstreamError(f"the instance's answer is over --max-response-bytes ({self.max_body} bytes); "
                                    "ask for a stream for answers this large")
            parts.append(chunk)
        body = b"".join(parts)
        if len(body) <= _BUFFERED_WRITE:  # fits the socket buffers: aiohttp's write cannot block on it
            self.finished = True
            self.first_byte_at = asyncio.get_running_loop().time()
            self.response = web.Response(body=body, status=upstream.status, headers=headers)
            return upstream.status
        response = self.response = web.StreamResponse(status=upstream.status, headers=headers)
        response.content_length = len(body)
        try:
            await self._prepare(response)
            await self._write(response, body)
            await response.write_eof()
        except ConnectionResetError as exc:
            raise ClientDisconnected("client disconnected while its answer was written") from exc
        finally:
            self._stop_watchdog()
        self.finished = True
        return response.status

    async def _prepare(self, response: web.StreamResponse) -> None:
        loop = asyncio.get_running_loop()
        if self.write_timeout:
            self._watchdog = loop.call_later(self.write_timeout, self._check_progress)
        self._writing_since = loop.time()
        await response.prepare(self.request)
        self._writing_since = None
        self.first_byte_at = loop.time()

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        self._writing_since = asyncio.get_running_loop().time()
        await response.write(data)
        self._writing_since = None

    def _check_progress(self) -> None:
        """The watchdog: abort the connection of a client whose write has been stuck too long."""
        since = self._writing_since
        loop = asyncio.get_running_loop()
        if since is not None and loop.time() - since >= self.write_timeout:
            self._watchdog = None
            transport = self.request.transport
            if transport is not None:
                transport.abort()  # the handler is cancelled; the upstream leg closes and is released
            return
        wait = self.write_timeout if since is None else self.write_timeout - (loop.time() - since)
        self._watchdog = loop.call_later(wait, self._check_progress)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def stream_error(self, error: RouterError) -> None:
        """End a started SSE stream with one OpenAI-shaped error event, so it is never silently cut."""
        assert self.response is not None
        try:
            async with asyncio.timeout(self.write_timeout or None):  # a client that stopped reading
                await self.response.write(b"data: " + jsonutil.dumps(error.to_dict()) + b"\n\n")
                await self.response.write_eof()
        except (ConnectionResetError, TimeoutError):
            pass  # the client is gone too, or not reading: nobody left to tell


__all__ = ["ClientSink", "relayed_headers"]
