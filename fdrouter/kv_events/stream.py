"""One instance's event stream as the router follows it: epoch, cursor, gaps, resyncs. Sans-IO.

The subscriber opens ``GET /kv_events`` with ``query()``, hands every line to ``feed()`` and,
when ``feed`` raises ``Resync``, calls ``reset()`` and reconnects. The rules:

- the first line is a hello; its block size and key scheme must be the router's, else
  ``Incompatible`` (nothing of this instance is indexed; the subscriber retries much later);
- a hello with a new epoch means the instance's cache started over (a restart): its blocks
  leave the index at once;
- ``resume: true`` continues from our cursor; otherwise a snapshot batch must come next, and
  it replaces whatever the index held for the instance;
- every other batch must be ``cursor + 1``; anything else is a gap: ``Resync``;
- a ping carrying a later sequence number than ours also reveals a gap;
- a malformed line is ``Resync`` too (``wire.WireError``), never a crash.

``reset()`` drops the instance's blocks and forgets the cursor, so the next connection asks
for a snapshot: what the index holds is then either the truth (as of the last event) or
nothing, never a stale guess kept past a known loss.
"""

from __future__ import annotations

from .index import KvIndex
from .wire import AllBlocksCleared, Batch, BlockRemoved, BlockStored, Hello, Ping, WireError, parse_line


class Resync(Exception):
    """The stream lost track (gap, malformed line, protocol slip): reset and reconnect for a snapshot."""


class Incompatible(Exception):
    """The instance keys its blocks differently (block size or hash scheme): do not index it."""


class StreamState:
    """What the router knows of one instance's stream (see the module docstring)."""

    __slots__ = ("url", "index", "block_tokens", "scheme", "epoch", "seq", "_await", "lines", "batches", "resyncs")

    def __init__(self, url: str, index: KvIndex, *, block_tokens: int, scheme: str) -> None:
        self.url = url
        self.index = index
        self.block_tokens = block_tokens
        self.scheme = scheme
        self.epoch: str | None = None
        self.seq: int | None = None
        """Sequence number of the last batch applied (None: nothing trusted, ask for a snapshot)."""
        self._await = "hello"  # what the next line must be: "hello", "snapshot" or "batch"
        self.lines = 0
        """Lines accepted (hello, batches, pings) over the lifetime of this object."""
        self.batches = 0
        """Batches applied over the lifetime of this object."""
        self.resyncs = 0
        """Times ``reset()`` was called."""

    def query(self) -> dict[str, str]:
        """The query string of the next connection: resume from the cursor if there is one."""
        self._await = "hello"
        if self.epoch is None or self.seq is None:
            return {}
        return {"epoch": self.epoch, "since": str(self.seq)}

    def reset(self) -> None:
        """Forget the cursor and the instance's blocks: the next connection starts from a snapshot."""
        self.index.clear(self.url)
        self.seq = None
        self._await = "hello"
        self.resyncs += 1

    def feed(self, raw: bytes) -> None:
        """Apply one line. Raises Resync (reset and reconnect) or Incompatible."""
        try:
            line = parse_line(raw)
        except WireError as exc:
            raise Resync(f"malformed line: {exc}") from None
        if line is None:
            return
        if isinstance(line, Hello):
            self._hello(line)
        elif self._await == "hello":
            raise Resync("the stream did not start with a hello line")
        elif isinstance(line, Batch):
            self._batch(line)
        elif isinstance(line, Ping) and self._await == "batch" and line.seq != self.seq:
            raise Resync(f"gap: ping at seq {line.seq}, last batch applied {self.seq}")
        self.lines += 1

    def _hello(self, hello: Hello) -> None:
        if self._await != "hello":
            raise Resync("a second hello line in one stream")
        if hello.block_tokens != self.block_tokens or hello.hash != self.scheme:
            raise Incompatible(
                f"instance keys {hello.block_tokens}-token blocks with {hello.hash!r}; the router uses "
                f"{self.block_tokens}-token blocks with {self.scheme!r}")
        if hello.epoch != self.epoch:
            if self.epoch is not None:
                self.index.clear(self.url)  # a new epoch: the old cache is gone
            self.epoch, self.seq = hello.epoch, None
        if hello.resume:
            if self.seq is None or hello.seq < self.seq:
                raise Resync(f"instance resumes at seq {hello.seq} but the router's cursor is {self.seq}")
            self._await = "batch"
        else:
            self._await = "snapshot"

    def _batch(self, batch: Batch) -> None:
        if batch.snapshot:
            self.index.clear(self.url)
        elif self._await == "snapshot":
            raise Resync(f"batch {batch.seq} where the snapshot was due")
        elif self.seq is None or batch.seq != self.seq + 1:
            raise Resync(f"gap: batch {batch.seq} after {self.seq}")
        self._apply(batch)
        self.seq = batch.seq
        self._await = "batch"
        self.batches += 1

    def _apply(self, batch: Batch) -> None:
        index, url = self.index, self.url
        for event in batch.events:
            if isinstance(event, BlockStored):
                index.store(url, event.block_hashes)
            elif isinstance(event, BlockRemoved):
                index.remove(url, event.block_hashes)
            elif isinstance(event, AllBlocksCleared):
                index.clear(url)


__all__ = ["Incompatible", "Resync", "StreamState"]
