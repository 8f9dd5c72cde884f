"""A lean keep-alive HTTP/1.1 client pool for generation traffic (asyncio.Protocol + httptools).

Why not aiohttp's client here: profiling the router at 64 concurrent requests showed a third
of its CPU in aiohttp's client machinery (request objects, header merging, a writer task and
timers per request), several times what forwarding one POST needs. The generation path only
ever sends a POST with a body we already hold as bytes and relays the answer, so this pool
does exactly that: one ``transport.write`` per request, httptools (the C parser uvicorn uses)
for the answer, one timer per request. aiohttp still serves the router and the control pool.

Semantics the router relies on (tested in tests/test_generation_pool.py):
- a response is *released* (connection back to the idle list) only after its whole body was
  read and the server allows keep-alive; anything else *closes* (aborts) the connection, so
  the instance sees the disconnect and stops generating;
- ``acquired`` counts connections lent to requests and always comes back to 0;
- a stale idle connection that dies before any answer byte is retried once on a new one.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator

import httptools


class ConnectError(OSError):
    """The TCP connection to the instance could not be opened."""


class ResponseBroken(ConnectionError):
    """The connection closed or sent bytes that are not HTTP before the answer was complete."""


class ResponseTimeout(TimeoutError):
    """One of the pool's timeouts fired; ``kind`` says which: total, first_byte or idle."""

    def __init__(self, kind: str, seconds: float, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.seconds = seconds


_HIGH_WATER = 256 * 1024  # pause reading from an instance when the client is this far behind
_LOW_WATER = 64 * 1024


class _Connection(asyncio.Protocol):
    """One TCP connection; parses one response at a time into a Response."""

    __slots__ = ("transport", "parser", "response", "lost", "reusable", "idle_since", "paused", "key", "pool")

    def __init__(self, key: tuple[str, int], pool: Http1Pool) -> None:
        self.key = key
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.lost = False
        self.reusable = False
        self.idle_since = 0.0
        self.paused = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is unusable
            self.lost = True
            self.transport.abort()  # type: ignore[union-attr]
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.response._fail(ResponseBroken(f"invalid HTTP response: {exc}"))
            self.transport.abort()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is None:
            self.pool._drop_idle(self)  # the instance closed an idle keep-alive connection
        elif not response._complete:
            if response._headers_done and response._until_close:
                response._finish()  # an answer framed by closing the connection
            else:
                response._fail(ResponseBroken("connection closed before the answer was complete"))

    def pause_writing(self) -> None:  # we write one small request: nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        response = self.response
        response.status = self.parser.get_status_code()
        response._headers_done = True
        names = {name for name, _ in response._headers}
        response._until_close = "content-length" not in names and "transfer-encoding" not in names
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self.response
        response._chunks.append(body)
        response._buffered += len(body)
        if response._buffered > _HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        response._wake()

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        self.response._finish()


class Response:
    """An instance's answer: status and headers first, the body as it arrives."""

    __slots__ = (
        "status", "_headers", "_headers_done", "_until_close", "_chunks", "_buffered", "_complete",
        "_error", "_waiter", "_conn", "_pool", "_done", "_timer",
    )

    def __init__(self, conn: _Connection, pool: Http1Pool) -> None:
        self.status = 0
        self._headers: list[tuple[str, str]] = []
        self._headers_done = False
        self._until_close = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._conn = conn
        self._pool = pool
        self._done = False  # released or closed: the connection is no longer ours
        self._timer: asyncio.TimerHandle | None = None

    # -- what the router reads ---------------------------------------------------------

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (name case-insensitive)."""
        name = name.lower()
        for key, value in self._headers:
            if key == name:
                return value
        return default

    @property
    def content_type(self) -> str:
        """The media type without parameters, e.g. ``text/event-stream``."""
        return self.header("content-type").partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole remaining body."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive from the instance, in order, coalesced when several wait."""
        chunks = self._chunks
        while True:
            if chunks:
                # everything already here goes out as one piece: one write to the client, not
                # one per SSE event (under load several events arrive per TCP read)
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered -= len(chunk)
                conn = self._conn
                if conn.paused and self._buffered < _LOW_WATER and not conn.lost:
                    conn.paused = False
                    conn.transport.resume_reading()  # type: ignore[union-attr]
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            idle = self._pool._idle_timeout
            if idle:
                handle = asyncio.get_running_loop().call_later(
                    idle, self._expire, "idle", idle, f"no data from the instance for {idle:g}s"
                )
                try:
                    await self._wait()
                finally:
                    handle.cancel()
            else:
                await self._wait()

    def release(self) -> None:
        """Give the connection back: kept alive if the answer was read whole, else closed."""
        if self._done:
            return
        if self._complete and not self._chunks and self._conn.reusable and not self._conn.lost:
            self._settle()
            self._pool._put_idle(self._conn)
        else:
            self.close()

    def close(self) -> None:
        """Abort the connection now: the instance sees the client go away."""
        if self._done:
            return
        self._fail(ResponseBroken("response closed"))  # wake anyone still waiting on it
        self._settle()
        conn = self._conn
        conn.lost = True
        if conn.transport is not None:
            conn.transport.abort()
        self._pool._forget(conn)

    # -- internals ---------------------------------------------------------------------

    def _settle(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._conn.response = None
        self._pool._unlend(self._conn)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._wake()

    def _timeout(self, seconds: float) -> None:
        self._timer = None
        self._expire("total", seconds, f"no complete answer within {seconds:g}s")

    def _expire(self, kind: str, seconds: float, message: str) -> None:
        if self._complete or self._done:
            return
        self._fail(ResponseTimeout(kind, seconds, message))
        conn = self._conn
        conn.lost = True
        if conn.transport is not None:
            conn.transport.abort()


class Http1Pool:
    """Keep-alive connections per (host, port), capped in total and per host."""

    def __init__(
        self,
        *,
        limit: int,
        limit_per_host: int = 0,
        keepalive_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        total_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        """Timeouts of None or 0 are off. ``first_byte_timeout`` runs from sending the request
        to the answer's headers; ``idle_timeout`` bounds each gap between body chunks."""
        self._limit = asyncio.Semaphore(limit)
        self._limit_per_host = limit_per_host
        self._per_host: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._keepalive = keepalive_timeout
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._first_byte_timeout = first_byte_timeout or None
        self._idle_timeout = idle_timeout or None
        self._closed = False
        self.acquired = 0
        self.connections_opened = 0

    async def post(self, host: str, port: int, target: bytes, body: bytes, headers: bytes = b"") -> Response:
        """Send ``POST target`` with a JSON body; returns once the answer's headers are in.

        ``headers`` are extra header lines, each ending in CRLF. The caller must
        ``release()`` or ``close()`` the response (UpstreamClient.post does, on every path).
        """
        if self._closed:
            raise RuntimeError("Http1Pool is closed")
        key = (host, port)
        host_header = f"[{host}]" if ":" in host else host
        head = b"".join((
            b"POST ", target, b" HTTP/1.1\r\nHost: ", host_header.encode(), b":", str(port).encode(),
            b"\r\nContent-Type: application/json\r\nContent-Length: ", str(len(body)).encode(), b"\r\n",
            headers, b"\r\n",
        ))
        for attempt in (0, 1):
            await self._acquire_slot(key)
            try:
                conn, reused = await self._connection(key)
            except BaseException:
                self._release_slot(key)
                raise
            # lent from here on: response.release()/close() give the slot back
            response = Response(conn, self)
            conn.response = response
            conn.reusable = False
            conn.parser = httptools.HttpResponseParser(conn)
            self.acquired += 1
            if self._total_timeout is not None:
                response._timer = asyncio.get_running_loop().call_later(
                    self._total_timeout, response._timeout, self._total_timeout
                )
            conn.transport.write(head + body)  # type: ignore[union-attr]
            first_byte = None
            if self._first_byte_timeout is not None:
                fbt = self._first_byte_timeout
                first_byte = asyncio.get_running_loop().call_later(
                    fbt, response._expire, "first_byte", fbt, f"no answer headers within {fbt:g}s"
                )
            try:
                while not response._headers_done:
                    if response._error is not None:
                        raise response._error
                    await response._wait()
            except ResponseBroken:
                response.close()
                # an idle connection the server had already closed: no answer byte came, so
                # the request never reached a live handler and one retry cannot duplicate work
                if reused and attempt == 0 and not response._headers:
                    continue
                raise
            except BaseException:
                response.close()
                raise
            finally:
                if first_byte is not None:
                    first_byte.cancel()
            return response
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.lost or conn.transport is None or conn.transport.is_closing():
                self._all.discard(conn)
                continue
            if now - conn.idle_since > self._keepalive:
                conn.transport.close()
                self._all.discard(conn)
                continue
            return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(key, self), key[0], key[1]), self._connect_timeout
            )
        except TimeoutError:
            raise ConnectError(f"connect timed out after {self._connect_timeout:g}s") from None
        except OSError as exc:
            # asyncio's message is "Connect call failed (addr)"; the errno says why
            raise ConnectError(os.strerror(exc.errno) if exc.errno else str(exc)) from exc
        self._all.add(conn)
        self.connections_opened += 1
        return conn, False

    async def _acquire_slot(self, key: tuple[str, int]) -> None:
        await self._limit.acquire()
        if self._limit_per_host:
            sem = self._per_host.get(key)
            if sem is None:
                sem = self._per_host[key] = asyncio.Semaphore(self._limit_per_host)
            try:
                await sem.acquire()
            except BaseException:
                self._limit.release()
                raise
        if self._closed:  # close() freed the slot we waited for: the pool is gone
            self._release_slot(key)
            raise RuntimeError("Http1Pool is closed")

    def _release_slot(self, key: tuple[str, int]) -> None:
        self._limit.release()
        if self._limit_per_host:
            self._per_host[key].release()

    def _unlend(self, conn: _Connection) -> None:
        self.acquired -= 1
        self._release_slot(conn.key)

    def _put_idle(self, conn: _Connection) -> None:
        if self._closed:
            self._forget(conn)
            conn.transport.close()  # type: ignore[union-attr]
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)

    def _drop_idle(self, conn: _Connection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    async def close(self) -> None:
        """Abort every connection, idle or lent; later requests raise. Idempotent."""
        self._closed = True
        for conn in list(self._all):
            if conn.response is not None:
                conn.response.close()
            elif conn.transport is not None:
                conn.transport.abort()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks


__all__ = ["ConnectError", "Http1Pool", "Response", "ResponseBroken", "ResponseTimeout"]
