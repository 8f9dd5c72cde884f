"""The lean front end's answers: bytes straight to the client's transport (response out).

``FrontSink`` is the lean front end's ``Sink``: what ``relay.ClientSink`` does with aiohttp's
response objects, done with one ``transport.write`` per piece. The same headers go out
(``relay.answer_headers``), the same caps and the same write watchdog apply (``relay``'s
functions and ``WriteWatchdog``); only the framing is written here:

- a buffered answer: ``Content-Length``, head and body in one write;
- a stream: ``Transfer-Encoding: chunked``, one chunk per piece the instance sent (an
  HTTP/1.0 client gets the bytes as they come and the connection closes at the end);
- ``Connection: close`` when the connection will not carry another request.

What the sink needs of its connection is the small ``Writer`` protocol (``front.FrontConnection``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

from .errors import ClientDisconnected, RouterError
from .generation_pool import Response
from .relay import (
    BUFFERED_WRITE,
    SSE,
    WriteWatchdog,
    add_stream_headers,
    answer_headers,
    error_event,
    read_capped,
)

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_date_second = -1
_date_header = ""  # the Date header of that second (RFC 9110 6.6.1: an origin server with a clock sends one)


def _date() -> str:
    global _date_second, _date_header
    now = int(time.time())
    if now != _date_second:
        _date_header = f"Date: {formatdate(now, usegmt=True)}\r\n"
        _date_second = now
    return _date_header


def render_head(status: int, headers: dict[str, str], *, length: int | None, chunked: bool,
                connection: str | None) -> bytes:
    """An answer's status line and headers, with its framing, ``Date`` and ``Connection``."""
    lines = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    if connection is not None:
        lines.append(f"Connection: {connection}\r\n")
    lines.append(_date())
    lines.append("\r\n")
    # latin-1: header values arrive as latin-1 text (the pool decodes them so), so each goes out
    # as the very bytes the instance sent
    return "".join(lines).encode("latin-1", "replace")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked answer (RFC 9112 7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class Writer(Protocol):
    """What a FrontSink writes through: the client's connection."""

    loop: asyncio.AbstractEventLoop
    write_paused: bool

    def answer_head(self, status: int, headers: dict[str, str], length: int | None) -> tuple[bytes, bool]:
        """The head of the answer to the current request and whether its body is chunked."""

    def write(self, data: bytes) -> None:
        """Hand bytes to the transport; ``ClientDisconnected`` if the client is gone."""

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""

    def abort(self) -> None:
        """Cut the connection now (a client that stopped reading)."""


class FrontSink:
    """The client side of one generation request on the lean front end."""

    __slots__ = ("conn", "extra", "instance", "first_byte_at", "prepared", "finished", "ended", "max_body",
                 "write_timeout", "status", "_chunked", "_stream", "_watchdog")

    def __init__(self, conn: Writer, request_id: str, *, max_body: int, write_timeout: float) -> None:
        self.conn = conn
        self.extra = {"X-Request-Id": request_id}
        self.instance = ""
        """URL of the instance whose answer is relayed (set by the router; a metrics label)."""
        self.first_byte_at: float | None = None
        """Event-loop time the answer's first byte went to the client."""
        self.prepared = False
        """The status line has gone out: after that, errors travel in-band."""
        self.finished = False
        """The whole answer has been handed to the transport."""
        self.ended = False
        """The answer is complete and framed (normally or by an error event): the connection may go on."""
        self.max_body = max_body
        self.write_timeout = write_timeout
        self.status = 0
        self._chunked = False
        self._stream = False
        self._watchdog: WriteWatchdog | None = None

    async def relay(self, upstream: Response) -> int:
        """Copy a 2xx upstream answer to the client; returns its status."""
        conn = self.conn
        headers = answer_headers(upstream, self.extra)
        if upstream.content_type != SSE:
            body = await read_capped(upstream, self.max_body)
            head, _ = conn.answer_head(upstream.status, headers, len(body))
            self.prepared = True
            self.first_byte_at = conn.loop.time()
            if len(body) <= BUFFERED_WRITE:  # fits the socket buffers: one write, no watchdog needed
                conn.write(head + body)
            else:
                conn.write(head)
                try:
                    await self._send(body)
                finally:
                    self._unwatch()
            self.finished = self.ended = True
            return upstream.status
        async with aclosing(upstream.iter_chunks()) as chunks:
            # Nothing goes to the client before the first chunk is here: a failure until then
            # leaves the client untouched, so the router may still retry elsewhere.
            first = await anext(chunks, None)
            # The end of the answer goes with its last piece when the instance's answer is all in
            # by then: one write, not two (under load a whole stream often comes in one read).
            last = upstream.drained
            head = self._open(upstream, headers)
            try:
                if first is None:
                    await self._send(head + LAST_CHUNK if last and self._chunked else head)
                else:
                    await self._send(head + self._piece(first, last))
                self.first_byte_at = conn.loop.time()
                async for piece in chunks:
                    last = upstream.drained
                    await self._send(self._piece(piece, last))
                if self._chunked and not last:
                    await self._send(LAST_CHUNK)
            finally:
                self._unwatch()
        self.finished = self.ended = True
        return upstream.status

    async def open_stream(self, upstream: Response) -> None:
        """Send an SSE answer's status line and headers (``upstream``'s, relayed); the watchdog starts."""
        head = self._open(upstream, answer_headers(upstream, self.extra))
        try:
            await self._send(head)
        except BaseException:
            self._unwatch()
            raise
        self.first_byte_at = self.conn.loop.time()

    async def send(self, data: bytes) -> None:
        """Send one piece of the open stream."""
        try:
            await self._send(self._piece(data, False))
        except BaseException:
            self._unwatch()
            raise

    async def end_stream(self) -> int:
        """End the open stream; its status."""
        try:
            if self._chunked:
                await self._send(LAST_CHUNK)
        finally:
            self._unwatch()
        self.finished = self.ended = True
        return self.status

    def _open(self, upstream: Response, headers: dict[str, str]) -> bytes:
        """The head of a stream (not written yet); from here on the answer has started."""
        add_stream_headers(headers)
        head, self._chunked = self.conn.answer_head(upstream.status, headers, None)
        self.status = upstream.status
        self.prepared = self._stream = True
        return head

    def _piece(self, data: bytes, last: bool) -> bytes:
        if not self._chunked:
            return data
        return chunk(data) + LAST_CHUNK if last else chunk(data)

    def _unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()

    async def _send(self, data: bytes) -> None:
        conn = self.conn
        conn.write(data)  # never blocks: the transport buffers what the socket does not take
        if conn.write_paused:  # the client reads slower than the instance writes: wait for it
            # the watchdog is armed at the first wait: a write that never waits cannot be stuck
            watchdog = self._watchdog
            if watchdog is None:
                watchdog = self._watchdog = WriteWatchdog(self.write_timeout, conn.abort)
                watchdog.start()
            watchdog.writing()
            await conn.drain()
            watchdog.wrote()

    async def stream_error(self, error: RouterError) -> None:
        """End a started SSE stream with one OpenAI-shaped error event, so it is never silently cut."""
        self._unwatch()
        if not self._stream:
            return  # a buffered answer cut mid-write: the connection closes, nothing can be added
        data = error_event(error)
        if self._chunked:
            data = chunk(data) + LAST_CHUNK
        try:
            self.conn.write(data)
            if self.conn.write_paused:
                async with asyncio.timeout(self.write_timeout or None):  # a client that stopped reading
                    await self.conn.drain()
        except (ClientDisconnected, TimeoutError):
            return  # the client is gone too, or not reading: nobody left to tell
        self.ended = True


__all__ = ["LAST_CHUNK", "FrontSink", "Writer", "chunk", "render_head"]
