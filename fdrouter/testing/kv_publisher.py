"""The mock backend's KV-event publisher: its prefix cache's changes, served as ``GET /kv_events``.

The instance side of docs/kv_events.md, as a real engine would implement it:

- it listens to the ``PrefixCache`` (``CacheListener``) and collects the events of one
  event-loop turn into one batch (vLLM batches per scheduler step), numbered 1, 2, ...;
- it keeps the last ``buffer`` batches, so a subscriber that reconnects with ``epoch`` and
  ``since`` is resumed from there; anyone else (a new subscriber, another epoch, a cursor
  older than the buffer) first gets a snapshot: AllBlocksCleared + every cached block;
- a subscriber that falls behind the buffer while connected gets a snapshot inline;
- a ping every ``heartbeat`` seconds while nothing happens, so the router can tell a quiet
  stream from a dead one.

It costs nothing until the first subscription: only then does it start listening to the cache
(a subscriber's first batch is a snapshot anyway, so nothing earlier could be observed). The
epoch is random per publisher: a new MockBackend on the same port is a restarted instance.

Test knobs: ``skip()`` makes a gap, ``inject(line)`` sends a raw (bad) line, ``new_epoch()``
restarts the cache in place without telling anyone, as a crash would.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from typing import Any

from aiohttp import web

from fdrouter.kv_events.hashing import HASH_SCHEME
from fdrouter.kv_events.wire import CLEARED, encode_batch, encode_hello, encode_ping, removed, stored
from fdrouter.sim.kvcache import PrefixCache

__all__ = ["DEFAULT_BUFFER", "DEFAULT_HEARTBEAT", "KvPublisher"]

DEFAULT_BUFFER = 1024
"""Batches kept for resuming subscribers (vLLM's ZmqEventPublisher keeps 10,000 steps)."""
DEFAULT_HEARTBEAT = 1.0
"""Seconds between pings on a quiet stream."""

_HEADERS = {"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}


class KvPublisher:
    """Publishes one ``PrefixCache``'s changes (see the module docstring); ``handle`` is the endpoint."""

    def __init__(self, cache: PrefixCache, *, buffer: int = DEFAULT_BUFFER,
                 heartbeat: float = DEFAULT_HEARTBEAT) -> None:
        self.heartbeat = heartbeat
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        """Last batch number published (0: none yet)."""
        self.subscriptions = 0
        """``GET /kv_events`` requests answered."""
        self.snapshots = 0
        """Snapshots sent (at connection or inline)."""
        self._cache = cache
        self._active = False
        self._buffer: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=buffer)
        self._forgotten = 0  # the last batch number dropped from the full buffer: no replay up to it
        self._pending: list[dict[str, Any]] = []
        self._flush_scheduled = False
        self._changed: asyncio.Event | None = None
        self._generation = 0  # bumped to end every open stream (a new epoch)

    # -- the cache side ---------------------------------------------------------------------------

    def attach(self, cache: PrefixCache) -> None:
        """Publish ``cache`` from now on (the mock rebuilt its cache for a new block size): a new epoch."""
        if cache is self._cache:
            return
        self._cache.listener = None
        self._cache = cache
        if self._active:
            self._restart()
            cache.listener = self

    def new_epoch(self) -> None:
        """An instance restart in place: the cache is emptied silently and the streams end."""
        listener, self._cache.listener = self._cache.listener, None
        self._cache.clear()
        self._cache.listener = listener
        self._restart()

    def _restart(self) -> None:
        self.epoch = secrets.token_hex(8)
        self.seq = self._forgotten = 0
        self._buffer.clear()
        self._pending.clear()
        self._generation += 1
        self._wake()

    def blocks_stored(self, hashes: list[int]) -> None:
        """``CacheListener``: blocks added."""
        self._pending.append(stored(hashes, self._cache.block_tokens))
        self._schedule()

    def blocks_removed(self, hashes: list[int]) -> None:
        """``CacheListener``: blocks evicted."""
        self._pending.append(removed(hashes))
        self._schedule()

    def all_cleared(self) -> None:
        """``CacheListener``: everything dropped."""
        self._pending.append(CLEARED)
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): publish at once
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Publish the events collected so far as one batch."""
        self._flush_scheduled = False
        if self._pending:
            self.seq += 1
            self._keep(encode_batch(self.seq, time.time(), self._pending))
            self._pending = []

    def _keep(self, line: bytes) -> None:
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self._forgotten = buffer[0][0]
        buffer.append((self.seq, line))
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- test knobs --------------------------------------------------------------------------------

    def skip(self, batches: int = 1) -> None:
        """Number ``batches`` batches that no subscriber will ever get: a gap."""
        self.flush()
        self.seq += batches
        self._wake()

    def inject(self, line: bytes) -> None:
        """Send ``line`` (newline added) to every subscriber as if it were the next batch."""
        self.flush()
        self.seq += 1
        self._keep(line.rstrip(b"\n") + b"\n")

    # -- the HTTP side -----------------------------------------------------------------------------

    def _snapshot(self) -> bytes:
        self.flush()  # the snapshot must be the state as of self.seq
        self.snapshots += 1
        events = [CLEARED, stored(self._cache.keys(), self._cache.block_tokens)]
        return encode_batch(self.seq, time.time(), events, snapshot=True)

    def _resumable(self, epoch: str | None, since: int | None) -> bool:
        return epoch == self.epoch and since is not None and self._forgotten <= since <= self.seq

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """``GET /kv_events?epoch=E&since=S``: the stream (see docs/kv_events.md)."""
        since_text = request.query.get("since")
        try:
            since = None if since_text is None else int(since_text)
        except ValueError:
            return web.json_response({"error": {"message": "'since' must be an integer", "type":
                                                "invalid_request_error", "code": 400}}, status=400)
        if not self._active:
            self._active = True
            self._cache.listener = self
        self.subscriptions += 1
        self.flush()
        resume = self._resumable(request.query.get("epoch"), since)
        generation = self._generation
        response = web.StreamResponse(headers=_HEADERS)
        await response.prepare(request)
        await response.write(encode_hello(self.epoch, self._cache.block_tokens, HASH_SCHEME, self.seq, resume))
        if resume:
            assert since is not None
            cursor = since
        else:
            cursor = self.seq
            await response.write(self._snapshot())
        while generation == self._generation:
            if cursor < self._forgotten:  # fell behind the buffer: start over
                cursor = self.seq
                await response.write(self._snapshot())
                continue
            due = [line for seq, line in self._buffer if seq > cursor]
            if due:
                cursor = self._buffer[-1][0]
                for line in due:
                    await response.write(line)
                continue
            if cursor < self.seq:  # skipped numbers, never sent: the subscriber finds the gap by the ping
                await response.write(encode_ping(self.seq))
                cursor = self.seq
                continue
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), self.heartbeat)
            except TimeoutError:
                await response.write(encode_ping(self.seq))
        return response
