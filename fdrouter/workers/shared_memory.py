"""The memory the worker processes of one router share (``fdrouter serve --workers N``).

One file-backed ``mmap`` (in the supervisor's state directory), mapped by the supervisor and
every worker. No lock is ever taken on a request's path: every number has one writer, and
readers either read a single 8-byte word or use a sequence counter (a seqlock) to get a
consistent copy of a larger region.

Layout (little-endian, 8-byte aligned)::

    header      8 words: magic, registry version (odd while written), health version,
                remote-metrics version, registry blob length, next instance generation, 2 spare
    registry    ``blob_bytes``: the registry as JSON, written whole under the writers' file lock
    health      ``slots`` int64: each slot's health verdict as ``generation << 8 | code``; the
                generation says which registration of the slot the verdict is about
    remote      ``slots`` x 3 float64: running, waiting, scraped_at (the supervisor's scrapes)
    load        ``workers`` x ``slots`` x 3 int64: in-flight requests, in-flight tokens, requests
                dispatched; each worker writes only its own row, readers sum the rows
    admission   ``workers`` x 2 int64: each worker's admitted and queued requests

Writers of the registry (a worker answering ``/register`` or ``/deregister``, the supervisor
adding static instances) serialise on an ``fcntl.flock`` of a lock file: that is the control
path only, and a few microseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import jsonutil

MAGIC = 0x66_64_72_6F_75_74_65_72  # "fdrouter"
_HEADER_WORDS = 8
_REGISTRY_VERSION, _HEALTH_VERSION, _REMOTE_VERSION, _BLOB_LENGTH, _NEXT_GENERATION = 1, 2, 3, 4, 5
LOAD_FIELDS = 3  # in-flight requests, in-flight tokens, requests dispatched


def _align(n: int) -> int:
    return (n + 7) // 8 * 8


@dataclass(frozen=True)
class Layout:
    """Where each region lives in the file, for ``workers`` workers and ``slots`` instance slots."""

    workers: int
    slots: int
    blob_bytes: int

    @property
    def registry(self) -> int:
        return _HEADER_WORDS * 8

    @property
    def health(self) -> int:
        return self.registry + _align(self.blob_bytes)

    @property
    def remote(self) -> int:
        return self.health + self.slots * 8

    @property
    def load(self) -> int:
        return self.remote + self.slots * 3 * 8

    @property
    def admission(self) -> int:
        return self.load + self.workers * self.slots * LOAD_FIELDS * 8

    @property
    def size(self) -> int:
        return self.admission + self.workers * 2 * 8

    @classmethod
    def for_instances(cls, workers: int, max_instances: int) -> Layout:
        """Room for ``max_instances`` registrations of up to ~4 KB of JSON each."""
        return cls(workers=workers, slots=max_instances, blob_bytes=max(1 << 20, max_instances * 4096))


class SharedMemory:
    """The mapped file: typed views of each region, and the registry blob's seqlock."""

    def __init__(self, path: str | os.PathLike[str], layout: Layout, *, create: bool = False) -> None:
        self.path = Path(path)
        self.layout = layout
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, layout.size)
            self._map = mmap.mmap(fd, layout.size)
        finally:
            os.close(fd)
        self._lock_path = self.path.with_suffix(".lock")
        view = memoryview(self._map)
        self.header = view[: _HEADER_WORDS * 8].cast("Q")
        self.health = view[layout.health: layout.remote].cast("q")
        self.remote = view[layout.remote: layout.load].cast("d")
        self.load = view[layout.load: layout.admission].cast("q")
        self.admission = view[layout.admission: layout.size].cast("q")
        self._blob = view[layout.registry: layout.registry + layout.blob_bytes]
        if create:
            self.header[0] = MAGIC
            self._lock_path.touch()
        elif self.header[0] != MAGIC:
            raise RuntimeError(f"{self.path} is not an fdrouter shared state file")

    def close(self) -> None:
        """Release the views and unmap (idempotent)."""
        for name in ("header", "health", "remote", "load", "admission", "_blob"):
            view = self.__dict__.pop(name, None)
            if view is not None:
                view.release()
        if not self._map.closed:
            self._map.close()

    # -- versions: one word each, read on every request -----------------------------------

    @property
    def registry_version(self) -> int:
        return self.header[_REGISTRY_VERSION]

    @property
    def health_version(self) -> int:
        return self.header[_HEALTH_VERSION]

    @property
    def remote_version(self) -> int:
        return self.header[_REMOTE_VERSION]

    def next_generation(self) -> int:
        """A new registration generation (call inside ``writer()``)."""
        self.header[_NEXT_GENERATION] += 1
        return self.header[_NEXT_GENERATION]

    def bump_health(self) -> None:
        """The health codes changed (their one writer, the supervisor, calls this after writing)."""
        self.header[_HEALTH_VERSION] += 1

    def bump_remote(self) -> None:
        """The remote metrics changed (written by the supervisor's scraper)."""
        self.header[_REMOTE_VERSION] += 1

    # -- the registry blob ----------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the writers' lock (between processes): for read-modify-write of the registry."""
        with open(self._lock_path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def write_registry(self, records: list[dict]) -> None:
        """Publish the registry (call inside ``writer()``); readers see all of it or none of it."""
        data = jsonutil.dumps(records)
        if len(data) > len(self._blob):
            raise OverflowError(f"the registry ({len(data)} bytes) does not fit the shared segment "
                                f"({len(self._blob)} bytes)")
        header = self.header
        header[_REGISTRY_VERSION] += 1  # odd: being written
        self._blob[: len(data)] = data
        header[_BLOB_LENGTH] = len(data)
        header[_REGISTRY_VERSION] += 1  # even: consistent

    def read_registry(self) -> tuple[int, list[dict]]:
        """(version, records): a consistent copy, retried while a writer is at work."""
        header = self.header
        while True:
            before = header[_REGISTRY_VERSION]
            if before % 2:
                os.sched_yield()
                continue
            length = header[_BLOB_LENGTH]
            data = bytes(self._blob[:length])
            if header[_REGISTRY_VERSION] == before:
                return before, (jsonutil.loads(data) if length else [])

    # -- load counters: each worker writes its own row --------------------------------------

    def load_index(self, worker: int, slot: int) -> int:
        """Index into ``load`` of (worker, slot)'s first field."""
        return (worker * self.layout.slots + slot) * LOAD_FIELDS

    def total_load(self, slot: int) -> tuple[int, int, int]:
        """(in-flight requests, in-flight tokens, requests dispatched) of a slot, summed over workers."""
        load, stride = self.load, self.layout.slots * LOAD_FIELDS
        first = slot * LOAD_FIELDS
        requests = tokens = total = 0
        for base in range(first, len(load), stride):
            requests += load[base]
            tokens += load[base + 1]
            total += load[base + 2]
        return requests, tokens, total

    def reset_worker(self, worker: int) -> None:
        """Zero a worker's rows (it died: its in-flight requests died with it)."""
        start = self.load_index(worker, 0)
        self.load[start: start + self.layout.slots * LOAD_FIELDS] = memoryview(
            bytes(self.layout.slots * LOAD_FIELDS * 8)).cast("q")
        self.admission[worker * 2: worker * 2 + 2] = memoryview(bytes(16)).cast("q")


__all__ = ["LOAD_FIELDS", "MAGIC", "Layout", "SharedMemory"]
