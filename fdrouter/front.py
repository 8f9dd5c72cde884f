"""The lean front end: the generation endpoints on a hand-written HTTP/1.1 protocol (request in).

Every client connection starts as a ``FrontConnection`` (``GuardedSite`` creates it when
``--http-front lean``, the default). A request whose line is ``POST /v1/chat/completions`` or
``POST /v1/completions`` is parsed here (httptools, ``front_parse``) and served through
``GenerationService.serve`` with a ``FrontSink`` that writes straight to the transport: none of
aiohttp's request, response, routing or middleware objects are built for it. Any other request
hands the connection to aiohttp: a ``GuardedRequestHandler`` adopts the transport with every
byte read of that request. aiohttp gives it back between two requests when the next one is a
generation request whose request line comes whole in one read (``GuardedRequestHandler.give_back``).
A profile at c=64 put ~40% of the router's CPU in aiohttp's server machinery; this path skips it
for the two endpoints that carry the traffic.

It keeps the aiohttp path's guarantees, per connection:

- keep-alive and HTTP/1.0 (closed after the answer unless keep-alive was asked); pipelined
  requests are read one at a time and answered in order, and reading stops while more than
  ``_BACKLOG_BYTES`` of them wait;
- ``Transfer-Encoding: chunked`` request bodies; ``Expect: 100-continue`` (the ``100`` goes out
  only once the key and the declared size passed, when the service asks for the body);
- ``ClientLimits``: a head must arrive within the header timeout (else ``408``), a body may
  stall at most the body timeout (else ``408``), an idle connection is closed after the
  keep-alive timeout; the sink's write watchdog cuts a client that stopped reading;
- a request's answer carries its ``X-Request-Id``; its task has it in the logging context;
- a client that goes away cancels its request's task, which closes the upstream connection;
- an answer given before the request's body was read closes the connection (after up to 1 s of
  reading and dropping, so a client still sending sees the answer rather than a reset);
- graceful drain: aiohttp's ``Server`` counts these connections with its own, so
  ``RouterServer.close`` reaches them through ``pre_shutdown`` (``close``) and ``shutdown``.

One timer per connection serves every time limit (``front_transport.ClientProtocol``): each
phase moves the deadline, and what its passing means follows the phase.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp.tcp_helpers import tcp_keepalive

from .errors import ClientDisconnected, PayloadTooLarge, RequestTimeout, RouterError
from .front_parse import (
    AIOHTTP,
    HEAD_TOO_LARGE,
    MAX_HEAD_BYTES,
    UNKNOWN,
    ChunkedEnd,
    Rejected,
    RequestParser,
    bad_request,
    head_end,
    route,
    too_large_head,
)
from .front_sink import FrontSink, render_head
from .front_transport import ClientProtocol
from .logs import accept_request_id, new_request_id, set_request_id
from .responses import error_parts

if TYPE_CHECKING:
    from aiohttp.web_server import Server

    from .client_guard import ClientLimits, GuardedRequestHandler
    from .generation_service import GenerationService

log = logging.getLogger(__name__)

_LINGER_SECS = 1.0  # as client_guard's aiohttp handlers: read and drop a refused body this long, then close
_BACKLOG_BYTES = 64 * 1024  # uvicorn's HIGH_WATER_LIMIT: pipelined bytes held before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# connection phases; the timer's meaning follows the phase
_IDLE = "idle"  # between requests: keep-alive timeout
_HEAD = "head"  # a request head is arriving: header timeout
_BODY = "body"  # the request's body is arriving (its task runs): body timeout
_BUSY = "busy"  # the request is read whole and being answered: the sink's watchdog guards writes
_LINGER = "linger"  # answered before the body was read: drop what comes, close after _LINGER_SECS
_CLOSED = "closed"  # closing (or handed to aiohttp): abort if a last write never drains


class LeanFront:
    """The lean front end of one server: settings shared by its connections, and their factory."""

    def __init__(self, service: GenerationService, limits: ClientLimits, server: Server) -> None:
        config = service.config
        self.service = service
        self.server = server
        """aiohttp's Server: lean connections are counted in it, so a graceful drain reaches them."""
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self.max_body = config.max_body_bytes
        self.max_response = config.max_response_bytes
        self.write_timeout = config.client_write_timeout_secs
        self.aiohttp_handler: Callable[[], GuardedRequestHandler] | None = None

    def factory(self, aiohttp_handler: Callable[[], GuardedRequestHandler]) -> Callable[[], FrontConnection]:
        """The protocol factory for the listening socket; ``aiohttp_handler`` makes the protocol
        a connection is handed to for any request the lean front does not serve."""
        self.aiohttp_handler = aiohttp_handler
        return lambda: FrontConnection(self)

    def hand_off(self, transport: asyncio.Transport, data: bytes, head_started: float | None,
                 writing_paused: bool) -> None:
        """Give a connection to aiohttp, with ``data``: every byte read of its current request."""
        assert self.aiohttp_handler is not None
        handler = self.aiohttp_handler()
        handler.give_back = self.take_back
        handler.adopt(transport, data, head_started=head_started, writing_paused=writing_paused)

    def take_back(self, transport: asyncio.Transport, data: bytes, writing_paused: bool) -> None:
        """Take a connection back from aiohttp between two requests: the next one is a generation request."""
        conn = FrontConnection(self)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if writing_paused:  # the transport will call resume_writing: be paused to match
            conn.pause_writing()
        conn.data_received(data)


class FrontConnection(ClientProtocol):
    """One client connection on the lean front end (see the module's docstring)."""

    _task_handler = None  # aiohttp's Server.connection_lost looks for a handler task: none to wait for

    __slots__ = ("front", "parser", "_phase", "_buf", "_tail", "_head_bytes", "_head_started", "_path", "_task",
                 "_body_waiter", "_body_error", "_chunk_end", "_left", "_closing", "_close_after", "_answered")

    def __init__(self, front: LeanFront) -> None:
        super().__init__()
        self.front = front
        self.parser = RequestParser(front.max_body)
        self._phase = _IDLE
        self._buf = b""  # bytes received and not parsed yet: the start of a head, pipelined requests
        self._tail = b""  # the last bytes of the head fed so far (its blank line may straddle two reads)
        self._head_bytes = 0
        self._head_started: float | None = None
        self._path: str | None = None  # the endpoint of the request being read, once its line is known
        self._task: asyncio.Task[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._body_error: RouterError | None = None
        self._chunk_end: ChunkedEnd | None = None
        self._left = 0  # Content-Length bytes of the body still to come
        self._closing = False  # the server is shutting down: no new request on this connection
        self._close_after = False  # the answer being written says Connection: close
        self._answered = False  # the current request got a complete error answer from here

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tcp_keepalive(self.transport)
        self.front.server.connection_made(cast(Any, self), self.transport)
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._phase = _CLOSED
        self.stop_timer()
        self.front.server.connection_lost(cast(Any, self), exc)
        self._wake_drain()  # a write after this raises ClientDisconnected
        if self._task is not None:
            self._task.cancel()  # the client left: the router closes the upstream connection

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is _BODY:
            data = self._body_received(data)
            if not data:
                return
            phase = self._phase
        if phase is _LINGER or phase is _CLOSED:
            return
        buf = self._buf = self._buf + data if self._buf else data
        if phase is _BUSY or phase is _BODY:  # pipelined: parsed once the current request is answered
            if len(buf) > _BACKLOG_BYTES:
                self.pause_reading()
            return
        self._read_head()

    # -- aiohttp's Server: graceful drain ------------------------------------------------------

    def close(self) -> None:
        """Take no new request (``Server.pre_shutdown``): a connection without one closes now."""
        self._closing = True
        if self._phase is _IDLE or self._phase is _HEAD:
            self._close()

    async def shutdown(self, timeout: float | None = 2.0) -> None:
        """End this connection (``Server.shutdown``): a request that has arrived gets ``timeout``
        seconds to finish; one still uploading is not waited for."""
        self._closing = True
        task = self._task
        wait = 2.0 if timeout is None else timeout
        if task is not None and not task.done():
            if self._phase is not _BODY:
                await asyncio.wait({task}, timeout=wait)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=wait)
        self._close()

    # -- reading requests ------------------------------------------------------------------

    def _read_head(self) -> None:
        """Parse the head at the start of ``_buf``, or hand the connection to aiohttp."""
        buf = self._buf
        if self._path is None:  # the first bytes of a request: whose is it?
            if self._phase is _IDLE:
                if self._closing:  # shutting down: no new request
                    self._buf = b""
                    self._close()
                    return
                if buf[:1] == b"\r" or buf[:1] == b"\n":
                    buf = self._buf = buf.lstrip(b"\r\n")  # RFC 9112 2.2: empty lines before a request
                    if not buf:
                        return
                self._phase = _HEAD
                self._head_started = self.loop.time()
            where = route(buf)
            if where is AIOHTTP:
                self._hand_off()
                return
            if where is UNKNOWN:  # too few bytes to tell: wait, under the header timeout
                self._head_deadline()
                return
            self._path = where
            self._head_bytes = 0
            self._tail = b""
            self.parser.begin()
        end = head_end(buf, self._tail)
        try:
            if end < 0:
                self._head_bytes += len(buf)
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise too_large_head(HEAD_TOO_LARGE)
                self.parser.feed(buf)  # llhttp refuses a malformed head as soon as it sees it
                self._tail = (self._tail + buf)[-3:]
                self._buf = b""
                self._head_deadline()
                return
            self._head_bytes += end
            if self._head_bytes > MAX_HEAD_BYTES:
                raise too_large_head(HEAD_TOO_LARGE)
            self.parser.feed(buf if end == len(buf) else buf[:end])
            if not self.parser.head_done:
                raise bad_request("invalid request head")
        except Rejected as rejected:
            self._refuse(rejected.error)
            return
        self._buf = buf[end:]
        self._start_request(self._path)

    def _start_request(self, path: str) -> None:
        parser = self.parser
        request_id = accept_request_id(parser.headers.get("X-Request-Id"))
        self._answered = self._close_after = False
        self._body_error = None
        if parser.done:
            self._busy()
        else:
            self._phase = _BODY
            self._chunk_end = ChunkedEnd() if parser.chunked else None
            self._left = parser.declared or 0
            self._body_deadline()
        self._task = self.loop.create_task(self._serve(path, request_id))
        if self._buf and self._phase is _BODY:  # body bytes that came with the head
            data, self._buf = self._buf, b""
            self._buf = self._body_received(data)

    def _body_received(self, data: bytes) -> bytes:
        """Take this request's body bytes from ``data``; returns what follows its end."""
        parser = self.parser
        chunk_end = self._chunk_end
        end = -1
        try:
            if chunk_end is not None:
                end = chunk_end.feed(data)
                piece, rest = (data, b"") if end < 0 else (data[:end], data[end:])
            else:
                left = self._left
                piece, rest = (data, b"") if len(data) <= left else (data[:left], data[left:])
                self._left = left - len(piece)
            parser.feed(piece)
            if end >= 0 and not parser.done:  # the chunk walk and llhttp disagree: trust neither
                raise bad_request("invalid chunked body")
        except Rejected as rejected:
            rejected.error.close_connection = True
            self._fail_body(rejected.error)
            return b""
        if parser.done:
            self._busy()
            self._wake_body()
        elif parser.too_large:
            self._wake_body()  # refused at once, as aiohttp's read_body does
        else:
            self._body_deadline()
        return rest

    def _fail_body(self, error: RouterError) -> None:
        """The body cannot be read (malformed, stalled): what else comes is not read either."""
        self._body_error = error
        self._busy()
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _read_body(self) -> bytes:
        """The request body (``GenerationService.serve`` calls it once the key passed)."""
        parser = self.parser
        max_bytes = self.front.max_body
        if parser.declared is not None and parser.declared > max_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
        if not parser.done and self._body_error is None and not parser.too_large:
            if parser.expect_continue and parser.http11 and not parser.size and self._phase is _BODY:
                self.write(_CONTINUE)  # RFC 9110 10.1.1: the client waits for this before sending
                self._body_deadline()
            waiter = self._body_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None
        if self._body_error is not None:
            raise self._body_error
        if parser.too_large:
            error = PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
            error.close_connection = True  # the rest of the body is not read
            raise error
        return parser.body()

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self, path: str, request_id: str) -> None:
        """The request's task: the service serves it; an error before the answer started is rendered here."""
        set_request_id(request_id)  # this task's own context: its log lines carry the id
        front = self.front
        sink = FrontSink(self, request_id, max_body=front.max_response, write_timeout=front.write_timeout)
        try:
            await front.service.serve(path, self.parser.headers, self._read_body, sink, request_id)
        except RouterError as error:
            if not sink.prepared:
                self._answer_error(error, request_id)
        except Exception:
            log.exception("unexpected error on POST %s", path)
            if not sink.prepared:
                self._answer_error(RouterError("internal router error; see the router log"), request_id)
        finally:
            self._request_done(sink.ended or self._answered)

    def _answer_error(self, error: RouterError, request_id: str) -> None:
        status, headers, body = error_parts(error)
        headers["X-Request-Id"] = request_id
        head, _ = self.answer_head(status, headers, len(body), close=error.close_connection)
        try:
            self.write(head + body)
        except ClientDisconnected:
            return
        self._answered = True

    def _request_done(self, answered: bool) -> None:
        """The request's task ends: go on with the next request, or close."""
        self._task = None
        self._path = None
        if self.transport is None or self._phase is _CLOSED or self._phase is _LINGER:
            return
        if not answered:  # the client left, or the answer broke off: the connection is unusable
            self._close()
        elif not self.parser.done:  # answered before the body came: read and drop it a moment, then close
            self._linger()
        elif self._close_after or self._closing:
            self._close()
        else:
            self._idle()
            self.resume_reading()
            if self._buf:
                self._read_head()  # the next pipelined request

    def answer_head(self, status: int, headers: dict[str, str], length: int | None, *,
                    close: bool = False) -> tuple[bytes, bool]:
        """The head of the answer to the current request, and whether its body is chunked
        (``front_sink.Writer``): ``Connection: close`` when the connection ends after it."""
        parser = self.parser
        close = close or self._closing or not parser.keep_alive or not parser.done
        chunked = False
        if length is None:  # a stream: chunked for HTTP/1.1; for HTTP/1.0 the close ends it
            chunked = parser.http11
            close = close or not chunked
        self._close_after = close
        connection = "close" if close else (None if parser.http11 else "keep-alive")
        return render_head(status, headers, length=length, chunked=chunked, connection=connection), chunked

    # -- refusing, lingering, closing, handing off ---------------------------------------------

    def _refuse(self, error: RouterError) -> None:
        """Answer a request refused before it reached the service (400, 408, 431), then close."""
        request_id = new_request_id()
        log.info("refused a request from %s: HTTP %d %s", self._peer(), error.status, error.message,
                 extra={"request_id": request_id})
        status, headers, body = error_parts(error)
        headers["X-Request-Id"] = request_id
        try:
            self.write(render_head(status, headers, length=len(body), chunked=False, connection="close") + body)
        except ClientDisconnected:
            return
        self._linger()

    def _linger(self) -> None:
        """Stop reading requests: drop what still comes for up to ``_LINGER_SECS``, then close.
        The client sees the answer (and EOF), not a reset from unread bytes."""
        transport = self.transport
        if transport is None:
            return
        self._phase = _LINGER
        self._buf = b""
        self.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self.set_deadline(self.loop.time() + _LINGER_SECS)

    def _close(self) -> None:
        transport = self.transport
        if transport is None or self._phase is _CLOSED:
            return
        self._phase = _CLOSED
        transport.close()  # after what is buffered is written; the timer aborts a client not reading it
        self.set_deadline(self.loop.time() + (self.front.write_timeout or _LINGER_SECS))

    def _hand_off(self) -> None:
        """Give this connection to aiohttp, with every byte read of the current request."""
        transport = self.transport
        assert transport is not None
        data, self._buf = self._buf, b""
        self.resume_reading()
        self._phase = _CLOSED
        self.transport = None
        self.stop_timer()
        self.front.server.connection_lost(cast(Any, self), None)  # the handler counts itself in
        self.front.hand_off(transport, data, self._head_started, self.write_paused)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else "an unknown peer"

    # -- the phases' deadlines -----------------------------------------------------------------

    def _idle(self) -> None:
        self._phase = _IDLE
        self._head_started = None
        timeout = self.front.keepalive_timeout
        self.set_deadline(self.loop.time() + timeout if timeout else math.inf)

    def _busy(self) -> None:
        self._phase = _BUSY
        self.set_deadline(math.inf)

    def _head_deadline(self) -> None:
        timeout = self.front.header_timeout
        if timeout and self._head_started is not None:
            self.set_deadline(self._head_started + timeout)

    def _body_deadline(self) -> None:
        timeout = self.front.body_timeout
        self.set_deadline(self.loop.time() + timeout if timeout else math.inf)

    def deadline_passed(self) -> None:
        phase = self._phase
        if phase is _IDLE or phase is _LINGER:
            self._close()
        elif phase is _HEAD:
            self._refuse(RequestTimeout(
                f"the request head did not arrive within {self.front.header_timeout:g}s "
                "(--client-header-timeout-secs); connection closed"))
        elif phase is _BODY:
            self._fail_body(RequestTimeout(
                f"the request body stalled: nothing arrived for {self.front.body_timeout:g}s "
                "(--client-body-timeout-secs); connection closed"))
        elif phase is _CLOSED and self.transport is not None:
            self.transport.abort()  # a closing connection whose client never read its last bytes


__all__ = ["FrontConnection", "LeanFront"]
