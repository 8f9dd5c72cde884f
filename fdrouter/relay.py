"""Writing an instance's answer back to the client: streamed (SSE) or buffered (response out).

The relay passes bytes through: no JSON is decoded or re-encoded on the way back, and the
instance's end-to-end headers go with them (``Content-Encoding`` included: bytes are never
delivered under an encoding they do not have). Only hop-by-hop headers and the ones the router
owns are dropped.

Two bounds protect the router from the two ends of a request:

- a buffered (non-SSE) answer larger than ``max_body`` bytes is refused with 502 instead of
  being held in memory (streams are not capped: they are relayed as they come);
- a client that stops reading: every write to it is watched (``WriteWatchdog``), and one that
  makes no progress for ``write_timeout`` seconds aborts the client's connection. One timer per
  answer, re-armed only when it fires; a write costs one clock read.

Two sinks write answers: ``ClientSink`` here (aiohttp's response objects) and the lean front
end's (``front_sink.FrontSink``: bytes straight to the transport). The pure parts (which
headers go out, the capped read, the watchdog, the error event) are functions and a class
both use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import aclosing

from aiohttp import web

from . import jsonutil
from .errors import ClientDisconnected, RouterError, UpstreamError
from .generation_pool import Response

SSE = "text/event-stream"

# RFC 9110 7.6.1 hop-by-hop headers, and those the router sets itself (framing, its own identity).
_NOT_RELAYED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length", "date", "server", "x-request-id",
})
BUFFERED_WRITE = 64 * 1024
"""A buffered answer larger than this is written with the watchdog on (a smaller one fits the
socket buffers, so its write cannot block)."""


def relayed_headers(upstream: Response) -> dict[str, str]:
    """The instance's end-to-end headers (names as the instance spelled them, lower-cased)."""
    items = upstream.header_items()
    hop = _NOT_RELAYED
    for name, value in items:
        if name == "connection":  # headers named in Connection are hop-by-hop too
            hop = hop | {token.strip().lower() for token in value.split(",")}
    out: dict[str, str] = {}
    for name, value in items:
        if name not in hop:
            out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def answer_headers(upstream: Response, extra: Mapping[str, str]) -> dict[str, str]:
    """The headers of the client's answer: the relayed ones, a JSON default type, then ``extra``."""
    headers = relayed_headers(upstream)
    headers.setdefault("content-type", "application/json")
    headers.update(extra)
    return headers


def add_stream_headers(headers: dict[str, str]) -> None:
    """An SSE answer must not be cached or buffered by proxies on the way (nginx: X-Accel-Buffering)."""
    headers.setdefault("cache-control", "no-cache")
    headers.setdefault("x-accel-buffering", "no")


async def read_capped(upstream: Response, max_body: int) -> bytes:
    """A buffered answer's whole body; ``UpstreamError`` (502) past ``max_body`` bytes."""
    parts, size = [], 0
    async for chunk in upstream.iter_chunks():
        size += len(chunk)
        if size > max_body:
            raise UpstreamError(f"the instance's answer is over --max-response-bytes ({max_body} bytes); "
                                "ask for a stream for answers this large")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def error_event(error: RouterError) -> bytes:
    """The one SSE event that ends a broken stream: the OpenAI error shape."""
    return b"data: " + jsonutil.dumps(error.to_dict()) + b"\n\n"


class WriteWatchdog:
    """Calls ``on_stuck`` once a write has made no progress for ``timeout`` seconds (0: never).

    Mark a write that may block with ``writing()`` before and ``wrote()`` after. One timer per
    answer, armed by ``start()`` and re-armed only when it fires; it ends with ``stop()``, or by
    itself once the task that started it is done (a request that ended on an error path).
    """

    __slots__ = ("timeout", "on_stuck", "_since", "_timer", "_task")

    def __init__(self, timeout: float, on_stuck: Callable[[], None]) -> None:
        self.timeout = timeout
        self.on_stuck = on_stuck
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Arm the timer (a no-op when off or armed already)."""
        if self.timeout and self._timer is None:
            self._task = asyncio.current_task()
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._check)

    def writing(self) -> None:
        """A write that may block starts now."""
        self._since = asyncio.get_running_loop().time()

    def wrote(self) -> None:
        """That write returned."""
        self._since = None

    def stop(self) -> None:
        """Disarm for good (the answer is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._task is not None and self._task.done():
            return  # the request is over: nothing left to watch
        since = self._since
        loop = asyncio.get_running_loop()
        if since is not None and loop.time() - since >= self.timeout:
            self.on_stuck()  # the client stopped reading: its connection is aborted
            return
        wait = self.timeout if since is None else self.timeout - (loop.time() - since)
        self._timer = loop.call_later(wait, self._check)


class ClientSink:
    """The client side of one request (aiohttp's response objects); remembers whether the answer has started."""

    __slots__ = ("request", "response", "finished", "headers", "first_byte_at", "instance", "max_body",
                 "write_timeout", "_watchdog")

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
        self._watchdog = WriteWatchdog(write_timeout, self._abort)

    @property
    def prepared(self) -> bool:
        """Whether the status line has gone out: after that, errors travel in-band."""
        return self.response is not None and self.response.prepared

    async def relay(self, upstream: Response) -> int:
        """Copy a 2xx upstream answer to the client (``self.response``); returns its status."""
        headers = answer_headers(upstream, self.headers)
        if upstream.content_type != SSE:
            return await self._buffered(upstream, headers)
        async with aclosing(upstream.iter_chunks()) as chunks:
            # Nothing goes to the client before the first chunk is here: a failure until then
            # leaves the client untouched, so the router may still retry elsewhere.
            first = await anext(chunks, None)
            try:
                await self._open(upstream, headers)
                if first is not None:
                    await self.send(first)
                async for chunk in chunks:
                    await self.send(chunk)
                return await self.end_stream()
            finally:
                self._watchdog.stop()

    async def open_stream(self, upstream: Response) -> None:
        """Send an SSE answer's status line and headers (``upstream``'s, relayed); the watchdog starts."""
        await self._open(upstream, answer_headers(upstream, self.headers))

    async def _open(self, upstream: Response, headers: dict[str, str]) -> None:
        add_stream_headers(headers)
        response = self.response = web.StreamResponse(status=upstream.status, headers=headers)
        try:
            await self._prepare(response)
        except ConnectionResetError as exc:  # includes aiohttp's ClientConnectionResetError on writes
            self._watchdog.stop()
            raise ClientDisconnected("client disconnected during the stream") from exc

    async def send(self, data: bytes) -> None:
        """Send one piece of the open stream."""
        assert self.response is not None
        try:
            await self._write(self.response, data)
        except ConnectionResetError as exc:
            self._watchdog.stop()
            raise ClientDisconnected("client disconnected during the stream") from exc

    async def end_stream(self) -> int:
        """End the open stream; its status."""
        assert self.response is not None
        try:
            await self.response.write_eof()
        except ConnectionResetError as exc:
            raise ClientDisconnected("client disconnected during the stream") from exc
        finally:
            self._watchdog.stop()
        self.finished = True
        return self.response.status

    async def _buffered(self, upstream: Response, headers: dict[str, str]) -> int:
        body = await read_capped(upstream, self.max_body)
        if len(body) <= BUFFERED_WRITE:  # fits the socket buffers: aiohttp's write cannot block on it
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
            self._watchdog.stop()
        self.finished = True
        return response.status

    async def _prepare(self, response: web.StreamResponse) -> None:
        watchdog = self._watchdog
        watchdog.start()
        watchdog.writing()
        await response.prepare(self.request)
        watchdog.wrote()
        self.first_byte_at = asyncio.get_running_loop().time()

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        self._watchdog.writing()
        await response.write(data)
        self._watchdog.wrote()

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()  # the handler is cancelled; the upstream leg closes and is released

    async def stream_error(self, error: RouterError) -> None:
        """End a started SSE stream with one OpenAI-shaped error event, so it is never silently cut."""
        assert self.response is not None
        self._watchdog.stop()
        try:
            async with asyncio.timeout(self.write_timeout or None):  # a client that stopped reading
                await self.response.write(error_event(error))
                await self.response.write_eof()
        except (ConnectionResetError, TimeoutError):
            pass  # the client is gone too, or not reading: nobody left to tell


__all__ = [
    "BUFFERED_WRITE", "SSE", "ClientSink", "WriteWatchdog", "add_stream_headers", "answer_headers", "error_event",
    "read_capped", "relayed_headers",
]
