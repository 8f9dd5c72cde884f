"""A lean keep-alive HTTP/1.1 client pool for generation traffic (asyncio.Protocol + httptools).

Why not aiohttp's client here: profiling the router at 64 concurrent requests showed a third
of its CPU in aiohttp's client machinery (request objects, header merging, a writer task and
timers per request), several times what forwarding one POST needs. The generation path only
ever sends a POST with a body we already hold as bytes and relays the answer, so this pool
does exactly that: one ``transport.write`` per request, httptools for the answer
(``generation_connection``), explicit connection and answer states (``generation_state``).
aiohttp still serves the router and the control pool.

Semantics the router relies on (tested in tests/test_generation_pool*.py):
- a response is *released* (connection back to the idle list) only after its whole body was
  read and the server allows keep-alive; anything else *closes* (aborts) the connection, so
  the instance sees the disconnect and stops generating;
- ``acquired`` counts the slots requests hold (a connection lent, or being opened, for each)
  and always comes back to 0;
- a reused idle connection that closes before any answer byte is retried once on a new one:
  the request never reached a live handler, so the retry cannot duplicate work;
- 1xx informational answers are skipped; 101 Switching Protocols is a broken answer;
- timeouts (None or 0: off): ``total`` from sending to the end of the answer, ``first_byte``
  from sending to the answer's headers, ``idle`` for each wait between body chunks;
- an idle connection older than ``keepalive_timeout`` is closed, not reused.

Slots. A request needs a slot under ``limit`` (all hosts) and, when ``limit_per_host`` is set,
one under its host's limit. Both are taken together, in one synchronous decision, or neither
(as aiohttp's connector and httpcore's ``_assign_requests_to_connections`` do): a request
waiting for a busy host's slot holds nothing meanwhile, so it cannot starve requests to
healthy hosts. When a slot frees, the oldest waiter that can use it gets it (FIFO per host;
waiters for a host at its limit are passed over, not blocking the others). A waiter that is
cancelled takes nothing, or gives back the slot it was handed before it could run. A free
slot never waits: the fast path is two integer comparisons, no lock and no await.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os

from .generation_connection import (
    ConnectError,
    Connection,
    NoAnswer,
    Response,
    ResponseBroken,
    ResponseTimeout,
)
from .generation_state import BODY, BODY_EOF, COMPLETE, FAILED, SETTLED

__all__ = ["ConnectError", "Http1Pool", "NoAnswer", "Response", "ResponseBroken", "ResponseTimeout"]

_Key = tuple[str, int]
_Waiter = tuple[int, "asyncio.Future[bool]"]  # (arrival number, resolved True: slot granted, False: pool closed)


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
        max_header_bytes: int = 64 * 1024,
    ) -> None:
        """Timeouts of None or 0 are off. ``first_byte_timeout`` runs from sending the request
        to the answer's headers; ``idle_timeout`` bounds each gap between body chunks.
        ``max_header_bytes`` caps an answer's head (nginx's proxy buffers hold 4-8 KB; 64 KB is
        generous): past it the answer is broken, not buffered."""
        self.max_header_bytes = max_header_bytes
        self._limit = limit
        self._limit_per_host = limit_per_host
        self.acquired = 0
        self._per_host: dict[_Key, int] = {}  # slots held per host, only with limit_per_host
        # FIFO queues of waiters, per host with limit_per_host, else one under None; never empty
        self._waiters: dict[_Key | None, collections.deque[_Waiter]] = {}
        self._arrivals = 0
        # idle connections per host, oldest first: a dict as an ordered set, so a connection the
        # instance closes leaves in O(1) and popitem() gives the most recently used one
        self._idle: dict[_Key, dict[Connection, None]] = {}
        self._all: set[Connection] = set()
        self._heads: dict[_Key, bytes] = {}  # the fixed part of each host's request head
        self._keepalive = keepalive_timeout
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout or None
        self._first_byte_timeout = first_byte_timeout or None
        self._idle_timeout = idle_timeout or None
        # what the timer is first set for: the sooner of the total and first-byte deadlines
        self._head_timeout = min((t for t in (self._total_timeout, self._first_byte_timeout) if t), default=None)
        self._closed = False
        self.connections_opened = 0

    def __repr__(self) -> str:
        per_host = f" limit_per_host={self._limit_per_host}" if self._limit_per_host else ""
        idle = {key: len(conns) for key, conns in self._idle.items() if conns}
        waiting = sum(len(queue) for queue in self._waiters.values())
        closed = " closed" if self._closed else ""
        return (f"<Http1Pool limit={self._limit}{per_host} acquired={self.acquired} idle={idle} "
                f"waiting={waiting}{closed}>")

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    async def post(self, host: str, port: int, target: bytes, body: bytes, headers: bytes = b"") -> Response:
        """Send ``POST target`` with a JSON body; returns once the answer's headers are in.

        ``headers`` are extra header lines, each ending in CRLF. The caller must
        ``release()`` or ``close()`` the response (UpstreamClient.post does, on every path).
        """
        if self._closed:
            raise RuntimeError("Http1Pool is closed")
        key = (host, port)
        head = self._heads.get(key) or self._head(key)
        request = b"".join((b"POST ", target, head, str(len(body)).encode(), b"\r\n", headers, b"\r\n", body))
        loop = asyncio.get_running_loop()
        limit_per_host = self._limit_per_host
        for attempt in (0, 1):
            if self.acquired < self._limit and (not limit_per_host or self._per_host.get(key, 0) < limit_per_host):
                self._take_slot(key)
            else:
                await self._wait_for_slot(key)
            # the slot is ours from here: every path gives it back once
            idle = self._idle.get(key)
            conn = self._take_idle(idle, loop.time()) if idle else None
            if conn is None:
                try:
                    conn = await self._open(key)
                except BaseException:
                    self._release(key)
                    raise
            now = loop.time()
            response = Response(conn, self, loop, now)  # lent: response.release()/close() give the slot back
            if self._head_timeout is not None:  # the one timer of this answer's timeouts
                response._timer = loop.call_at(now + self._head_timeout, response._on_timer)
            try:
                conn.transport.write(request)  # type: ignore[union-attr]
                while True:
                    phase = response.phase
                    if phase is BODY or phase is BODY_EOF or phase is COMPLETE:
                        return response
                    if phase is FAILED or phase is SETTLED:  # settled here: closed by close()
                        raise response._error  # type: ignore[misc]
                    await response._new_waiter()
            except NoAnswer:
                response.close()
                if conn.served > 1 and attempt == 0:  # a stale idle connection: once more, on a new one
                    continue
                raise
            except BaseException:
                response.close()
                raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Abort every connection, idle or lent, and wake every waiter; later requests raise. Idempotent."""
        self._closed = True
        for queue in self._waiters.values():
            for _, waiter in queue:
                if not waiter.done():
                    waiter.set_result(False)
        self._waiters.clear()
        for conn in list(self._all):
            if conn.response is not None:
                conn.response.close()
            else:
                conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks

    # -- slots -------------------------------------------------------------------------

    def _take_slot(self, key: _Key) -> None:
        self.acquired += 1
        if self._limit_per_host:
            self._per_host[key] = self._per_host.get(key, 0) + 1

    async def _wait_for_slot(self, key: _Key) -> None:
        queue_key = key if self._limit_per_host else None
        queue = self._waiters.get(queue_key)
        if queue is None:
            queue = self._waiters[queue_key] = collections.deque()
        self._arrivals += 1
        entry: _Waiter = (self._arrivals, asyncio.get_running_loop().create_future())
        queue.append(entry)
        waiter = entry[1]
        try:
            granted = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release(key)  # handed a slot, then cancelled before it could run: pass it on
            else:
                self._unqueue(queue_key, entry)
            raise
        if not granted:
            raise RuntimeError("Http1Pool is closed")

    def _unqueue(self, queue_key: _Key | None, entry: _Waiter) -> None:
        queue = self._waiters.get(queue_key)
        if queue is None:
            return
        try:
            queue.remove(entry)
        except ValueError:
            return
        if not queue:
            del self._waiters[queue_key]

    def _release(self, key: _Key) -> None:
        """A request gave its slot back; hand free slots to waiters."""
        self.acquired -= 1
        if self._limit_per_host:
            held = self._per_host[key] - 1
            if held:
                self._per_host[key] = held
            else:
                del self._per_host[key]
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        """While a slot is free: the oldest waiter whose host is under its limit takes it."""
        limit_per_host = self._limit_per_host
        waiters = self._waiters
        while self.acquired < self._limit and waiters:
            chosen: _Key | None = None
            first = 0
            found = False
            for queue_key, queue in waiters.items():
                if queue_key is not None and self._per_host.get(queue_key, 0) >= limit_per_host:
                    continue
                if not found or queue[0][0] < first:
                    chosen, first, found = queue_key, queue[0][0], True
            if not found:
                return
            queue = waiters[chosen]
            _, waiter = queue.popleft()
            if not queue:
                del waiters[chosen]
            if waiter.done():  # cancelled while queued, its task not yet run: it takes nothing
                continue
            self.acquired += 1
            if chosen is not None:
                self._per_host[chosen] = self._per_host.get(chosen, 0) + 1
            waiter.set_result(True)

    # -- connections -------------------------------------------------------------------

    def _head(self, key: _Key) -> bytes:
        """The request line's tail and fixed headers for ``key``, up to the Content-Length value."""
        host, port = key
        host_header = f"[{host}]" if ":" in host else host  # an IPv6 literal (RFC 9110 section 7.2)
        head = (f" HTTP/1.1\r\nHost: {host_header}:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: ").encode()
        if len(self._heads) >= 4096:  # instances come and go: keep the cache from growing forever
            self._heads.clear()
        self._heads[key] = head
        return head

    def _take_idle(self, idle: dict[Connection, None], now: float) -> Connection | None:
        while idle:
            conn, _ = idle.popitem()  # the most recently used: the likeliest still open
            if now - conn.idle_since > self._keepalive:
                expired = [conn, *idle]  # every connection under it went idle earlier still
                idle.clear()
                for old in expired:
                    old.close(abort=False)
                return None
            if not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
            conn.close()  # the instance closed it and connection_lost has not run yet
        return None

    async def _open(self, key: _Key) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(functools.partial(Connection, key, self), *key)
        except TimeoutError:
            raise ConnectError(f"connect timed out after {self._connect_timeout:g}s") from None
        except OSError as exc:
            # asyncio's message is "Connect call failed (addr)"; the errno says why
            raise ConnectError(os.strerror(exc.errno) if exc.errno else str(exc)) from exc
        self.connections_opened += 1
        if self._closed:  # close() ran while we connected: the pool is gone
            conn.close()
            raise RuntimeError("Http1Pool is closed")
        self._all.add(conn)
        return conn

    def _put_idle(self, conn: Connection, now: float) -> None:
        if self._closed:
            conn.close(abort=False)
            return
        conn.to_idle(now)
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = {}
        idle[conn] = None

    def _forget(self, conn: Connection, was_idle: bool) -> None:
        """``conn`` closed: it is in no list any more."""
        self._all.discard(conn)
        if was_idle:
            idle = self._idle.get(conn.key)
            if idle is not None:
                idle.pop(conn, None)
                if not idle:  # e.g. an instance that left: keep no empty entry for it
                    del self._idle[conn.key]

