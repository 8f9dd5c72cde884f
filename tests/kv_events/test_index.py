"""KvIndex: what it says an instance holds, its bounds, and its short-lived guesses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fdrouter.kv_events.index import KvIndex

A, B, C = "http://a:1", "http://b:1", "http://c:1"


def test_match_finds_the_longest_leading_run_and_every_instance_holding_it():
    index = KvIndex()
    index.store(A, [1, 2, 3])
    index.store(B, [1, 2])
    index.store(C, [1, 2, 3])
    assert index.match([1, 2, 3, 4], [A, B, C]) == (3, [A, C])
    assert index.match([1, 2, 3, 4], [B]) == (2, [B])
    assert index.match([9, 1, 2], [A, B, C]) == (0, [])  # a prefix must match from its first block


def test_match_ignores_instances_that_are_not_candidates_or_unknown():
    index = KvIndex()
    index.store(A, [1, 2])
    assert index.match([1, 2], [B, "http://never-seen:1"]) == (0, [])
    assert index.match([], [A]) == (0, [])


def test_removed_blocks_and_a_cleared_instance_stop_matching():
    index = KvIndex()
    index.store(A, [1, 2, 3])
    index.store(B, [1, 2, 3])
    index.remove(A, [2, 99])  # 99 was never stored: ignored
    assert index.match([1, 2, 3], [A, B]) == (3, [B])
    assert index.match([1, 2, 3], [A]) == (1, [A])
    index.clear(B)
    assert index.blocks_of(B) == set() and index.holders(1) == [A]
    assert len(index) == 2  # keys 1 and 3 (A still holds 3, though it cannot be matched past 2)


def test_a_dropped_instance_leaves_no_trace_even_when_its_slot_is_reused():
    index = KvIndex()
    index.store(A, [1, 2])
    index.store(B, [3])
    index.drop(A)
    index.store(C, [5])  # takes A's slot
    assert index.instances() == [B, C]
    assert index.holders(1) == [] and index.match([1, 2], [A, B, C]) == (0, [])
    assert index.match([5], [A, B, C]) == (1, [C])


def test_one_instance_beyond_its_cap_loses_its_oldest_blocks_and_no_one_elses():
    index = KvIndex(max_blocks_per_instance=3)
    index.store(B, [1, 2])
    index.store(A, [1, 2, 3])
    index.store(A, [4, 5])
    assert index.blocks_of(A) == {3, 4, 5}
    assert index.blocks_of(B) == {1, 2}
    assert index.evicted == 2


def test_beyond_the_global_cap_the_least_recently_stored_or_matched_keys_go_first():
    index = KvIndex(max_blocks=4)
    index.store(A, [1, 2])
    index.store(B, [3, 4])
    assert index.match([1, 2], [A]) == (2, [A])  # 1 and 2 are now the most recently used
    index.store(C, [5, 6])
    assert len(index) == 4
    assert index.blocks_of(B) == set() and index.blocks_of(A) == {1, 2} and index.blocks_of(C) == {5, 6}


def test_a_guess_counts_until_it_expires():
    index = KvIndex()
    index.speculate(A, [1, 2], until=10.0)
    assert index.match([1, 2, 3], [A, B]) == (2, [A])
    index.expire(9.9)
    assert index.match([1, 2], [A]) == (2, [A])
    index.expire(10.0)
    assert index.match([1, 2], [A]) == (0, [])


def test_a_later_guess_of_the_same_blocks_outlives_the_earlier_one():
    index = KvIndex()
    index.speculate(A, [1, 2], until=10.0)
    index.speculate(A, [1, 2], until=15.0)
    index.expire(12.0)
    assert index.match([1, 2], [A]) == (2, [A])
    index.expire(15.0)
    assert index.match([1, 2], [A]) == (0, [])


def test_a_stored_block_confirms_its_guess_after_which_its_removal_counts_at_once():
    index = KvIndex()
    index.speculate(A, [1, 2], until=10.0)
    index.store(A, [1, 2])
    index.remove(A, [1, 2])
    assert index.match([1, 2], [A]) == (0, [])


def test_a_removal_does_not_end_a_guess_but_a_clear_does():
    index = KvIndex()
    index.speculate(A, [1, 2], until=10.0)
    index.remove(A, [1, 2])  # may predate the guess: the request sent there stores them again
    assert index.match([1, 2], [A]) == (2, [A])
    index.clear(A)  # a restart: nothing sent before it will be cached there
    assert index.match([1, 2], [A]) == (0, [])


def test_guesses_are_bounded_by_max_blocks_too():
    index = KvIndex(max_blocks=4)
    for i in range(10):
        index.speculate(A, [100 * i + 1, 100 * i + 2], until=99.0)
    assert index.match([901, 902], [A]) == (2, [A])
    assert index.match([1, 2], [A]) == (0, [])  # the oldest guesses ended early


_ops = st.lists(st.tuples(st.sampled_from(["store", "remove", "clear", "drop"]), st.sampled_from([A, B, C]),
                          st.lists(st.integers(0, 12), max_size=6)), max_size=40)


@given(_ops, st.lists(st.integers(0, 12), max_size=6), st.sets(st.sampled_from([A, B, C])))
def test_without_bounds_the_index_answers_like_a_plain_map_of_sets(ops, query, candidates):
    index, model = KvIndex(), {A: set(), B: set(), C: set()}
    for op, url, keys in ops:
        if op == "store":
            index.store(url, keys)
            model[url] |= set(keys)
        elif op == "remove":
            index.remove(url, keys)
            model[url] -= set(keys)
        else:
            getattr(index, op)(url)
            model[url] = set()
    for url in (A, B, C):
        assert index.blocks_of(url) == model[url]
    best, holders = 0, set()
    for url in candidates:
        depth = next((i for i, k in enumerate(query) if k not in model[url]), len(query))
        if depth > best:
            best, holders = depth, {url}
        elif depth == best and depth:
            holders.add(url)
    depth, found = index.match(query, sorted(candidates))
    assert (depth, set(found)) == (best, holders)
