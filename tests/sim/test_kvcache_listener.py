"""PrefixCache's listener: told every block added or evicted and every clear, in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fdrouter.sim.kvcache import PrefixCache


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[int]]] = []

    def blocks_stored(self, hashes: list[int]) -> None:
        self.events.append(("stored", hashes))

    def blocks_removed(self, hashes: list[int]) -> None:
        self.events.append(("removed", hashes))

    def all_cleared(self) -> None:
        self.events.append(("cleared", []))


def test_the_listener_hears_additions_then_evictions_and_not_lookups():
    cache = PrefixCache(3)
    cache.listener = recorder = Recorder()
    assert cache.lookup_and_insert([1, 2]) == 0
    assert cache.lookup_and_insert([1, 2, 3, 4]) == 32  # 1 and 2 hit (reordered, not changed)
    cache.clear()
    assert recorder.events == [("stored", [1, 2]), ("stored", [3, 4]), ("removed", [1]), ("cleared", [])]


@given(st.lists(st.lists(st.integers(0, 20), max_size=8), max_size=30), st.integers(0, 10))
def test_replaying_what_the_listener_heard_rebuilds_the_cache_and_the_hits_are_unchanged(prompts, capacity):
    told, silent = PrefixCache(capacity), PrefixCache(capacity)
    told.listener = recorder = Recorder()
    for prompt in prompts:
        assert told.lookup_and_insert(prompt) == silent.lookup_and_insert(prompt)
    replica: set[int] = set()
    for kind, hashes in recorder.events:
        if kind == "stored":
            replica |= set(hashes)
        else:
            replica -= set(hashes)
    assert replica == set(told.keys()) == set(silent.keys())
