"""Protection against slow or broken clients, at the connection level (request in).

aiohttp bounds none of this by itself: a client may trickle a request head one byte a second,
stop half-way through an upload, or sit on an idle keep-alive connection for an hour
(aiohttp's keep-alive default is 3,630 s), each holding a file descriptor. A few hundred such
connections take a router offline (slowloris). So every client connection gets:

- a **header timeout**: from the first byte of a request head to its end
  (``--client-header-timeout-secs``); on expiry the client gets ``408`` and the connection
  is closed;
- a **keep-alive idle timeout**: a connection with no request in progress is closed after
  ``--client-keepalive-timeout-secs`` (nginx's 75 s);
- a **body timeout**: reading the body must make progress every
  ``--client-body-timeout-secs`` (``read_body``), else ``408`` and the connection is closed.

Defaults follow nginx (``client_header_timeout``/``client_body_timeout`` 60 s, between two
reads, ``keepalive_timeout`` 75 s), with the header timeout tighter: a head is a few hundred
bytes. Protocol errors the HTTP parser raises (oversized or malformed heads) are answered in
the OpenAI error shape (431 for an oversized line or header) with one log line, no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from . import jsonutil
from .errors import HttpError, PayloadTooLarge, RequestTimeout, RouterError
from .front_parse import starts_generation

if TYPE_CHECKING:
    from .front import LeanFront

log = logging.getLogger(__name__)

_LINGER_SECS = 1.0


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The per-connection time limits; 0 turns one off."""

    header_timeout: float = 30.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0


def _raw_error(error: RouterError) -> bytes:
    """A complete HTTP/1.1 error answer that closes the connection, for when no handler runs."""
    body = jsonutil.dumps(error.to_dict())
    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}.get(error.status, "Bad Request")
    return (f"HTTP/1.1 {error.status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol plus a header timeout and OpenAI-shaped protocol errors."""

    __slots__ = ("_head_timeout", "_head_timer", "_heads_seen", "give_back")

    def __init__(self, manager: Any, *, limits: ClientLimits, **kwargs: Any) -> None:
        # lingering: after answering a request whose body was not read to its end, aiohttp keeps
        # reading (and dropping) for this long so a client still sending sees the answer rather
        # than a reset; 1 s instead of aiohttp's 10 s, so a stalled upload cannot hold it longer
        kwargs["lingering_time"] = _LINGER_SECS
        super().__init__(manager, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._head_timeout = limits.header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_seen = 0
        self.give_back: Callable[[asyncio.Transport, bytes, bool], None] | None = None
        """Set by the lean front end (``front.py``) on a connection it handed over: one whose next
        request is a generation request goes back to it, with that request's bytes."""

    def data_received(self, data: bytes) -> None:
        if self.give_back is not None and data and self._between_requests() and starts_generation(data):
            self._release(data)
            return
        # A new request head starts when bytes arrive while no request is in progress and
        # none is parsed and waiting; the timer runs until a whole head has been parsed.
        if (self._head_timer is None and self._head_timeout > 0 and not self._request_in_progress
                and not self._messages and data):
            self._heads_seen = self._request_count
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_timed_out)
        super().data_received(data)
        if self._head_timer is not None and self._request_count != self._heads_seen:
            self._head_timer.cancel()
            self._head_timer = None

    def adopt(self, transport: asyncio.Transport, data: bytes, *, head_started: float | None,
              writing_paused: bool) -> None:
        """Take over a connection the lean front end accepted (``front.py``), with every byte it
        read of the current request; the header timeout still counts from ``head_started``."""
        transport.set_protocol(self)
        self.connection_made(transport)
        if writing_paused:  # the transport will call resume_writing: be paused to match
            self.pause_writing()
        if data:
            if head_started is not None and self._head_timeout > 0:
                self._heads_seen = self._request_count
                self._head_timer = self._loop.call_at(head_started + self._head_timeout, self._head_timed_out)
            self.data_received(data)

    def _between_requests(self) -> bool:
        """Every request so far is answered and its body read or dropped, and no byte of another
        has come: aiohttp's loop waits for the next message (not while it lingers on a body).
        Read from aiohttp's own state; should a release rename it, connections simply stay aiohttp's."""
        try:
            waiter = self._waiter
            return (waiter is not None and not waiter.done() and not self._messages
                    and not self._request_in_progress and self._head_timer is None and self._payload_parser is None
                    and not self._upgraded and not self._close and not self._force_close)
        except AttributeError:
            return False

    def _release(self, data: bytes) -> None:
        """Let go of the connection without closing it and hand it back (``give_back``)."""
        transport, give_back = self.transport, self.give_back
        assert transport is not None and give_back is not None
        self.transport = None  # nothing of aiohttp's may close it from here on
        self._force_close = True
        for handle in (self._keepalive_handle, self._head_timer):
            if handle is not None:
                handle.cancel()
        self._keepalive_handle = self._head_timer = None
        if self._manager is not None:
            self._manager.connection_lost(self, None)  # no longer counted: the lean connection counts itself
            self._manager = None
        if self._reading_paused or self._buffer_paused:
            transport.resume_reading()
        if self._waiter is not None:
            self._waiter.cancel()  # aiohttp's loop for this connection ends
        give_back(transport, data, self._paused)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._request_count != self._heads_seen or self.transport is None:
            return  # a head arrived in the meantime
        error = RequestTimeout(
            f"the request head did not arrive within {self._head_timeout:g}s "
            "(--client-header-timeout-secs); connection closed")
        log.info("closing a connection from %s: %s", self._peer(), error.message)
        self.transport.write(_raw_error(error))
        self.force_close()
        self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Parser and framework errors: the OpenAI shape, one log line, the connection closed."""
        if isinstance(exc, LineTooLong):
            error: RouterError = HttpError(431, "a request line or header field is over the router's limit "
                                                "of 8190 bytes")
        elif status == 500:
            log.error("unexpected error on a client connection from %s: %r", self._peer(), exc)
            error = RouterError("internal router error; see the router log")
        else:
            detail = getattr(exc, "message", None) or message or "malformed HTTP request"
            error = HttpError(status, f"malformed HTTP request: {detail}")
        if status != 500:
            log.info("refused a request from %s: HTTP %d %s", self._peer(), error.status, error.message)
        response = web.Response(body=jsonutil.dumps(error.to_dict()), status=error.status,
                                content_type="application/json")
        response.force_close()
        return response

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else "an unknown peer"


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are ``GuardedRequestHandler``s with ``limits``, or, with
    ``front`` (``front.LeanFront``), lean connections that hand other requests to them."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limits: ClientLimits,
                 front: LeanFront | None = None, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._limits = limits
        self._front = front

    async def start(self) -> None:
        """Bind and serve (as TCPSite.start, with the guarded protocol)."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limits = self._limits
        loop = asyncio.get_running_loop()

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, loop=loop, limits=limits, **server._kwargs)

        factory: Callable[[], asyncio.Protocol] = protocol if self._front is None else self._front.factory(protocol)
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        if sockets:
            self._bound_port = sockets[0].getsockname()[1]


async def read_body(request: web.Request, *, max_bytes: int, idle_timeout: float) -> bytes:
    """The whole request body, each read bounded by ``idle_timeout`` and the total by ``max_bytes``.

    Raises ``RequestTimeout`` (408; the connection is closed, its body half-read) when the
    client stops sending, ``PayloadTooLarge`` (413) past ``max_bytes``.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    content = request.content
    while True:
        try:
            async with asyncio.timeout(idle_timeout or None):
                chunk = await content.readany()
        except TimeoutError:
            raise RequestTimeout(  # answered with Connection: close: the rest of the body never came
                f"the request body stalled: nothing arrived for {idle_timeout:g}s "
                "(--client-body-timeout-secs); connection closed") from None
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > max_bytes:
            error = PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
            error.close_connection = True  # the rest of the body is not read
            raise error
        parts.append(chunk)


__all__ = ["ClientLimits", "GuardedRequestHandler", "GuardedSite", "read_body"]
