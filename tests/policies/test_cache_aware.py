"""cache_aware: SGLang's cache-aware balancer over the shared radix tree."""

from __future__ import annotations

import random
import string
import time

import pytest

from fdrouter.policies import RoutingFacts, make_policy

from .candidates import Cand

SYSTEM = "You are a helpful assistant. Answer briefly and cite sources. " * 4  # 248 chars


def facts(text: str | None, now: float = 0.0) -> RoutingFacts:
    return RoutingFacts(prompt_text=text, now=now)


def test_a_prompt_sharing_a_long_prefix_goes_where_that_prefix_went():
    a, b, c = Cand("a"), Cand("b"), Cand("c")
    policy = make_policy("cache_aware")
    first = policy.choose([a, b, c], facts(SYSTEM + "What is a radix tree?"))
    assert first is a  # cold tree: least loaded, earliest
    a.in_flight = 3  # busier, but load is balanced by SGLang's thresholds
    assert policy.choose([a, b, c], facts(SYSTEM + "And a trie?")) is a


def test_a_short_match_below_the_threshold_goes_to_the_least_loaded():
    a, b = Cand("a", in_flight=1), Cand("b", in_flight=0)
    policy = make_policy("cache_aware", cache_threshold=0.5)
    policy.choose([a], facts("abcdefghij"))  # a holds "abcdefghij"
    # 4 of 10 characters match a (0.4 < 0.5): a miss.
    assert policy.choose([a, b], facts("abcdzzzzzz")) is b
    # 6 of 10 match (0.6 >= 0.5): a hit, although a is busier.
    assert policy.choose([a, b], facts("abcdefzzzz")) is a


def test_the_threshold_counts_a_match_exactly_at_it_as_a_hit():
    a, b = Cand("a", in_flight=1), Cand("b")
    policy = make_policy("cache_aware", cache_threshold=0.5)
    policy.choose([a], facts("abcdefghij"))
    assert policy.choose([a, b], facts("abcdezzzzz")) is a


def test_a_miss_picks_by_load_not_by_smallest_tree():
    # SGLang #14532: on a miss, the least loaded instance, even if it holds the most.
    big, small = Cand("big"), Cand("small", in_flight=2)
    policy = make_policy("cache_aware")
    for i in range(20):
        policy.choose([big], facts(f"{i:03d} " + "x" * 200))
    assert policy.choose([big, small], facts("an unrelated prompt")) is big


def test_several_instances_with_the_same_match_go_to_the_least_loaded_of_them():
    a, b, c = Cand("a", in_flight=5), Cand("b", in_flight=2), Cand("c", in_flight=0)
    policy = make_policy("cache_aware")
    policy.choose([a], facts(SYSTEM))
    policy.choose([b], facts(SYSTEM))
    assert policy.choose([a, b, c], facts(SYSTEM + "question")) is b


def test_imbalanced_load_overrides_the_cache():
    holder, idle = Cand("holder"), Cand("idle")
    policy = make_policy("cache_aware")  # abs 64, rel 1.5
    policy.choose([holder], facts(SYSTEM))
    holder.in_flight, idle.in_flight = 100, 10  # 90 > 64 and 100 > 15
    assert policy.choose([holder, idle], facts(SYSTEM + "q")) is idle
    # and the prompt is recorded under the instance that got it
    matched, holders = policy.tree.match(SYSTEM + "q", {"idle"})
    assert (matched, holders) == (len(SYSTEM) + 1, {"idle"})


@pytest.mark.parametrize(
    ("holder_load", "idle_load"),
    [(200, 150), (40, 0)],  # only the absolute gap is big / only the ratio is big
)
def test_load_is_imbalanced_only_when_both_thresholds_are_passed(holder_load, idle_load):
    holder, idle = Cand("holder"), Cand("idle")
    policy = make_policy("cache_aware")
    policy.choose([holder], facts(SYSTEM))
    holder.in_flight, idle.in_flight = holder_load, idle_load
    assert policy.choose([holder, idle], facts(SYSTEM + "q")) is holder


def test_instances_missing_from_the_candidates_are_ignored_but_remembered():
    a, b, c = Cand("a"), Cand("b", in_flight=1), Cand("c", in_flight=2)
    policy = make_policy("cache_aware")
    policy.choose([a], facts(SYSTEM))
    assert policy.choose([b, c], facts(SYSTEM + "q")) is b  # a is unhealthy: a miss
    b.in_flight = 4
    assert policy.choose([a, b, c], facts(SYSTEM + "r")) in (a, b)
    assert "a" in policy.tree.tenants()


def test_entries_unused_for_an_eviction_interval_are_dropped():
    a, b = Cand("a", in_flight=1), Cand("b")
    policy = make_policy("cache_aware", eviction_interval_secs=60)
    policy.choose([a], facts(SYSTEM, now=0.0))
    assert policy.choose([a, b], facts(SYSTEM + "q", now=30.0)) is a  # still cached
    size_before = policy.tree_size()
    policy.choose([b], facts("unrelated", now=100.0))  # eviction runs: a's entries are 70 s old
    assert policy.tree.tenants() == {"b"}
    assert policy.tree_size() < size_before
    assert policy.choose([a, b], facts(SYSTEM + "q", now=101.0)) is b  # a miss now


def test_the_tree_stays_within_max_tree_size_over_many_requests():
    rng = random.Random(3)
    group = [Cand(f"i{n}") for n in range(8)]
    bound = 20_000
    policy = make_policy("cache_aware", max_tree_size=bound)
    heads = ["".join(rng.choices(string.ascii_letters, k=300)) for _ in range(20)]
    for i in range(1_000):
        text = rng.choice(heads) + "".join(rng.choices(string.ascii_letters, k=rng.randrange(50, 700)))
        choice = policy.choose(group, facts(text, now=i * 0.1))
        choice.in_flight += 1
        if i % 2:
            rng.choice(group).in_flight = 0
        assert policy.tree_size() <= bound
    assert policy.node_count() > 0


def test_without_prompt_text_it_picks_the_least_loaded_and_records_nothing():
    a, b = Cand("a", in_flight=2), Cand("b", in_flight=1)
    policy = make_policy("cache_aware")
    assert policy.choose([a, b], facts(None)) is b
    assert policy.choose([a, b], facts("")) is b
    assert policy.tree_size() == 0


@pytest.mark.parametrize(
    "options",
    [{"cache_threshold": -0.1}, {"balance_abs_threshold": -1}, {"eviction_interval_secs": 0}, {"max_tree_size": 0}],
)
def test_bad_options_are_rejected_naming_them(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        make_policy("cache_aware", **options)


def test_a_request_with_a_2000_character_prompt_costs_well_under_a_millisecond():
    # The simulator pushes 100k such requests through it; 0.3 ms each would already be 30 s.
    rng = random.Random(4)
    group = [Cand(f"i{n}") for n in range(8)]
    policy = make_policy("cache_aware")
    heads = ["".join(rng.choices(string.ascii_letters, k=1500)) for _ in range(50)]
    prompts = [rng.choice(heads) + "".join(rng.choices(string.ascii_letters, k=500)) for _ in range(4_000)]
    for i, text in enumerate(prompts[:2_000]):
        policy.choose(group, facts(text, now=i * 0.01))
    # This thread's CPU time, not the wall clock: other processes on a loaded machine cannot inflate
    # it. A request costs ~10 us, so the bound is a guard against a costlier algorithm (a walk
    # over the whole tree), not a speed target: those belong to the benchmarks.
    start = time.thread_time()
    for i, text in enumerate(prompts[2_000:]):
        policy.choose(group, facts(text, now=20 + i * 0.01))
    per_request = (time.thread_time() - start) / 2_000
    assert per_request < 300e-6, f"{per_request * 1e6:.0f} us of CPU per request"
