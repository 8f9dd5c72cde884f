"""The simulator's model of KV events: an instance's cache changes reach the router's index late.

In the router, an instance publishes its prefix cache's changes and the background subscriber
applies them to the ``kv_events`` policy's ``KvIndex`` (``fdrouter.kv_events``). Here each
``SimInstance``'s ``PrefixCache`` gets a ``KvFeed`` as its listener, and every change is
applied to the same index ``delay`` seconds of simulated time later (0: at once), through the
simulator's own event queue. The keys are the instances' own cache keys, the ones the
simulator passes to policies as ``facts.prompt_blocks`` (text hashes or a trace's block ids).

What is modelled: publication and transport delay, evictions, clears, and the index's bounds.
What is not: lost events and resyncs (a snapshot would restore the very state the events
build), which is why a delay is the one knob.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..kv_events.index import KvIndex
from .events import Event, Kind

__all__ = ["KvFeed", "apply"]


def apply(payload: tuple[KvIndex, str, str, list[int]]) -> None:
    """Apply one delayed change (the payload of a ``Kind.KV_EVENT`` event) to its index."""
    index, url, op, keys = payload
    if op == "stored":
        index.store(url, keys)
    elif op == "removed":
        index.remove(url, keys)
    else:
        index.clear(url)


class KvFeed:
    """A ``CacheListener`` for one simulated instance: forwards its changes to ``index`` after ``delay``."""

    __slots__ = ("url", "index", "delay", "_clock", "_push")

    def __init__(self, url: str, index: KvIndex, delay: float, *, clock: Callable[[], float],
                 push: Callable[[Iterable[Event]], None]) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.url = url
        self.index = index
        self.delay = delay
        self._clock = clock
        self._push = push

    def _send(self, op: str, keys: list[int]) -> None:
        payload = (self.index, self.url, op, keys)
        if self.delay == 0:
            apply(payload)
        else:
            self._push([Event(self._clock() + self.delay, Kind.KV_EVENT, payload)])

    def blocks_stored(self, hashes: list[int]) -> None:
        """Blocks added to the instance's cache."""
        self._send("stored", hashes)

    def blocks_removed(self, hashes: list[int]) -> None:
        """Blocks evicted."""
        self._send("removed", hashes)

    def all_cleared(self) -> None:
        """The cache was emptied."""
        self._send("cleared", [])
