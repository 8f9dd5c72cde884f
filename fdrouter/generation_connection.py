"""One HTTP/1.1 connection of the generation pool and the answer it carries (asyncio.Protocol + httptools).

``Connection`` is the protocol: it feeds the instance's bytes to httptools (the C parser uvicorn
uses) and turns the parser's callbacks into events of the answer in flight, a ``Response``.
Both keep one explicit state, with the rules as tables in ``generation_state``; the pool
(``generation_pool.Http1Pool``) lends connections and takes them back.

Flow control: when more than ``_HIGH_WATER`` bytes wait unread in a Response, reading from
the instance pauses, so a slow client slows the instance's socket instead of growing our
memory; it resumes once the reader is below ``_LOW_WATER``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

import httptools

from .generation_state import (
    ACTIVE,
    BODY,
    BODY_EOF,
    CLOSED,
    COMPLETE,
    FAILED,
    HEAD,
    IDLE,
    NEW,
    SENT,
    SETTLED,
    ConnState,
    Event,
    check_conn_transition,
    next_phase,
)

if TYPE_CHECKING:
    from .generation_pool import Http1Pool

__all__ = ["ConnectError", "Connection", "NoAnswer", "Response", "ResponseBroken", "ResponseTimeout"]


class ConnectError(OSError):
    """The TCP connection to the instance could not be opened."""


class ResponseBroken(ConnectionError):
    """The connection closed or sent bytes that are not HTTP before the answer was complete."""


class NoAnswer(ResponseBroken):
    """The connection closed before any byte of the answer came."""


class ResponseTimeout(TimeoutError):
    """One of the pool's timeouts fired; ``kind`` says which: total, first_byte or idle."""

    def __init__(self, kind: str, seconds: float, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.seconds = seconds


# uvicorn pauses reading a request body at 64 KiB (HIGH_WATER_LIMIT in
# uvicorn/protocols/http/flow_control.py); an SSE event is a few hundred bytes, so 256 KiB lets
# a client fall hundreds of events behind before the instance's socket is slowed.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024

_BEGIN, _INFO, _HEADERS, _HEADERS_EOF = Event.BEGIN, Event.INFO, Event.HEADERS, Event.HEADERS_EOF
_COMPLETE, _EOF, _FAIL, _SETTLE = Event.COMPLETE, Event.EOF, Event.FAIL, Event.SETTLE


class Connection(asyncio.Protocol):
    """One TCP connection to an instance; parses one answer at a time into its Response."""

    __slots__ = ("key", "pool", "transport", "parser", "state", "response", "idle_since", "served")

    def __init__(self, key: tuple[str, int], pool: Http1Pool) -> None:
        self.key = key
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # one parser for the connection's life: llhttp starts over after each complete answer
        self.parser = httptools.HttpResponseParser(self)
        self.state = NEW
        self.response: Response | None = None
        self.idle_since = 0.0
        self.served = 0  # requests lent this connection, for the retry rule and __repr__

    def __repr__(self) -> str:
        host, port = self.key
        answer = f" answer={self.response.phase.value}" if self.response is not None else ""
        return f"<Connection {host}:{port} {self.state.value} served={self.served}{answer}>"

    def _to(self, new: ConnState) -> None:
        check_conn_transition(self.state, new)
        self.state = new

    # -- what the pool and the Response do with it ------------------------------------

    def lend(self, response: Response) -> None:
        """Carry ``response``'s answer: new or idle -> active."""
        self._to(ACTIVE)
        self.response = response
        self.served += 1

    def to_idle(self, now: float) -> None:
        """The answer was read whole and keep-alive is allowed: active -> idle."""
        self._to(IDLE)
        self.response = None
        self.idle_since = now

    def close(self, *, abort: bool = True) -> None:
        """Close now (abort: drop unsent bytes, the instance sees a reset); idempotent."""
        if self.state is CLOSED:
            return
        was_idle = self.state is IDLE
        self._to(CLOSED)
        self.pool._forget(self, was_idle)
        if self.transport is not None:
            self.transport.abort() if abort else self.transport.close()

    def resume_reading(self) -> None:
        """The reader caught up: read from the instance again (flow control)."""
        if self.state is ACTIVE:
            self.transport.resume_reading()  # type: ignore[union-attr]

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes while new or idle: nobody asked, the connection is unusable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # a complete answer followed by more bytes stays complete (the table): only the
            # connection is lost
            cause = exc.__context__ if isinstance(exc.__context__, ResponseBroken) else exc
            response._fail(ResponseBroken(f"invalid HTTP response: {cause}"))
            self.close()
        # one wake-up per read, not per parser callback: the reader takes all that came at once
        waiter = response._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is CLOSED:  # we closed it: whoever did already settled its answer
            return
        was_idle = self.state is IDLE
        self._to(CLOSED)
        self.pool._forget(self, was_idle)
        if self.response is not None:
            self.response._eof()

    def pause_writing(self) -> None:  # we write one small request: nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks (all within data_received, which wakes the reader) ----------

    def on_message_begin(self) -> None:
        response: Response = self.response  # type: ignore[assignment]
        if response.phase is not SENT and response.phase is not HEAD:
            # a second answer to one request: the parser reports it, data_received closes
            raise ResponseBroken("more than one answer to one request")
        response._on(_BEGIN)

    def on_header(self, name: bytes, value: bytes) -> None:
        response: Response = self.response  # type: ignore[assignment]
        if response.phase is HEAD:  # not the trailers after a chunked body
            response._header_bytes += len(name) + len(value) + 4
            if response._header_bytes > self.pool.max_header_bytes:
                # 300 MB of headers once took a router to 440 MB: refuse past the cap
                raise ResponseBroken(f"the answer's headers are over {self.pool.max_header_bytes} bytes")
            response._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response: Response = self.response  # type: ignore[assignment]
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                response._fail(ResponseBroken("101 Switching Protocols: the router never asks to upgrade"))
                return
            response._headers.clear()  # a 1xx answer's headers are not the answer's
            response._on(_INFO)
            return
        response.status = status
        for name, _ in response._headers:
            if name == b"content-length" or name == b"transfer-encoding":
                response._on(_HEADERS)
                return
        response._on(_HEADERS_EOF)

    def on_body(self, body: bytes) -> None:
        response: Response = self.response  # type: ignore[assignment]
        response._chunks.append(body)
        response._buffered += len(body)
        if response._buffered > _HIGH_WATER and self.transport.is_reading():  # type: ignore[union-attr]
            self.transport.pause_reading()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        response: Response = self.response  # type: ignore[assignment]
        if response.phase is HEAD or response.phase is FAILED:  # the end of a 1xx, or of a 101
            response._on(_COMPLETE)
            return
        keep_alive = self.parser.should_keep_alive()  # only valid now: llhttp resets it next
        response._on(_COMPLETE)
        if not keep_alive:  # Connection: close, or HTTP/1.0: everything is in, nothing to reuse
            self.close(abort=False)


class Response:
    """An instance's answer: status and headers first, the body as it arrives."""

    __slots__ = ("status", "phase", "on_done", "_headers", "_header_bytes", "_chunks", "_buffered", "_error",
                 "_waiter", "_conn", "_pool", "_loop", "_timer", "_sent_at", "_wait_started")

    def __init__(self, conn: Connection, pool: Http1Pool, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self.status = 0
        self.phase = SENT
        self.on_done: Callable[[], None] | None = None
        """Called once when the answer is complete, failed or settled: the instance's work for this
        request is over, even if the reader has not taken every byte yet (a slow client)."""
        self._headers: list[tuple[bytes, bytes]] = []  # (lower-case name, value), decoded on demand
        self._header_bytes = 0
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._conn = conn
        self._pool = pool
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None  # the one timer of all three timeouts
        self._sent_at = now
        self._wait_started = now  # when the reader last began waiting for body bytes
        conn.lend(self)

    def __repr__(self) -> str:
        return f"<Response {self.status or '-'} {self.phase.value} buffered={self._buffered} on {self._conn!r}>"

    # -- what the router reads ---------------------------------------------------------

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (name case-insensitive)."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._headers:
            if key == wanted:
                return value.decode("latin-1")
        return default

    def header_items(self) -> list[tuple[str, str]]:
        """Every header of the answer, in order, names lower-case."""
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._headers]

    @property
    def content_type(self) -> str:
        """The media type without parameters, e.g. ``text/event-stream``."""
        return self.header("content-type").partition(";")[0].strip().lower()

    @property
    def drained(self) -> bool:
        """The whole answer is in and every byte of it was taken: the next read ends the body.
        (A relay can send its own end of the answer with the last piece, in one write.)"""
        return self.phase is COMPLETE and not self._chunks

    async def read(self) -> bytes:
        """The whole remaining body."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """Body bytes as they arrive from the instance, in order, coalesced when several wait."""
        chunks = self._chunks
        idle = self._pool._idle_timeout
        while True:
            if chunks:
                # everything already here goes out as one piece: one write to the client, not
                # one per SSE event (under load several events arrive per TCP read)
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                paused = self._buffered > _HIGH_WATER  # on_body paused reading when it crossed this
                self._buffered -= len(chunk)
                if paused and self._buffered < _LOW_WATER:
                    self._conn.resume_reading()
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            phase = self.phase
            if phase is COMPLETE or phase is SETTLED:
                return
            if idle is not None:
                # the idle timeout runs while we wait: make sure the timer fires by its end
                now = self._wait_started = self._loop.time()
                if self._timer is None or self._timer.when() > now + idle:
                    self._arm(now + idle)
            await self._new_waiter()

    def release(self) -> None:
        """Give the connection back: kept alive if the answer was read whole, else closed."""
        if self.phase is SETTLED:
            return
        conn = self._conn
        if self.phase is COMPLETE and not self._chunks and conn.state is ACTIVE:
            self._settle()
            self._pool._put_idle(conn, self._loop.time())
        else:
            self.close()

    def close(self) -> None:
        """Abort the connection now: the instance sees the client go away."""
        if self.phase is SETTLED:
            return
        self._fail(ResponseBroken("response closed"))  # wake anyone still waiting on it
        self._conn.close()
        self._settle()

    # -- internals ---------------------------------------------------------------------

    def _on(self, event: Event) -> None:
        self.phase = phase = next_phase(self.phase, event)
        if (phase is COMPLETE or phase is FAILED or phase is SETTLED) and self.on_done is not None:
            done, self.on_done = self.on_done, None
            done()

    def _settle(self) -> None:
        self._on(_SETTLE)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._conn
        if conn.response is self:
            conn.response = None
        self._pool._release(conn.key)

    def _new_waiter(self) -> asyncio.Future[None]:
        """A future the next read, failure or timeout resolves; awaited directly (no coroutine)."""
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> bool:
        """Fail the answer with ``error`` unless it is complete or failed already; True if it did."""
        before = self.phase
        self._on(_FAIL)
        failed = self.phase is FAILED and before is not FAILED
        if failed:
            self._error = error
        self._wake()
        return failed

    def _eof(self) -> None:
        before = self.phase
        self._on(_EOF)
        if self.phase is FAILED and before is not FAILED:
            self._error = (NoAnswer("connection closed before any answer byte") if before is SENT
                           else ResponseBroken("connection closed before the answer was complete"))
        self._wake()

    # -- timeouts: one timer per answer, moved only when it would fire too late ----------

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """Expire the timeout that is due, or arm the timer for the next one."""
        self._timer = None
        phase = self.phase
        if phase is COMPLETE or phase is FAILED or phase is SETTLED:
            return
        pool = self._pool
        # a timer may run a hair early (asyncio runs handles within its clock resolution,
        # uvloop rounds to milliseconds): a deadline within 1 ms counts as reached
        now = self._loop.time() + 0.001
        after: list[float] = []
        if pool._total_timeout is not None:
            after.append(self._sent_at + pool._total_timeout)
            if after[-1] <= now:
                return self._expire("total", pool._total_timeout, "no complete answer within {:g}s")
        if pool._first_byte_timeout is not None and (phase is SENT or phase is HEAD):
            after.append(self._sent_at + pool._first_byte_timeout)
            if after[-1] <= now:
                return self._expire("first_byte", pool._first_byte_timeout, "no answer headers within {:g}s")
        waiter = self._waiter
        if (pool._idle_timeout is not None and (phase is BODY or phase is BODY_EOF)
                and waiter is not None and not waiter.done()):
            # only while the reader waits: a slow client is not an idle instance
            after.append(self._wait_started + pool._idle_timeout)
            if after[-1] <= now:
                return self._expire("idle", pool._idle_timeout, "no data from the instance for {:g}s")
        if after:
            self._arm(min(after))

    def _expire(self, kind: str, seconds: float, message: str) -> None:
        if self._fail(ResponseTimeout(kind, seconds, message.format(seconds))):
            self._conn.close()
