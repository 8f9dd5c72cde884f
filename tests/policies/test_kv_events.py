"""The kv_events policy, sans-IO: an index filled by hand stands for the instances' events."""

from __future__ import annotations

import pytest

from fdrouter.kv_events.hashing import text_block_keys
from fdrouter.policies import RoutingFacts, make_policy
from fdrouter.policies.kv_events import KvEvents

from .candidates import Cand

PROMPT = "You are the support assistant of a bicycle shop. " * 12  # 600 characters: 9 blocks of 64
KEYS = text_block_keys(PROMPT, 16)


def _facts(text: str = PROMPT, now: float = 0.0, blocks: list[int] | None = None) -> RoutingFacts:
    return RoutingFacts(prompt_tokens=len(text) // 4, prompt_text=text, prompt_blocks=blocks, now=now)


def _cands(*loads: int) -> list[Cand]:
    return [Cand(f"http://i{n}:1", in_flight=load) for n, load in enumerate(loads)]


def test_it_picks_the_instance_reporting_the_longest_cached_prefix_even_if_busier():
    policy = KvEvents(pending_secs=0)
    a, b, c = _cands(5, 0, 3)
    policy.kv_index.store(a.url, KEYS)
    policy.kv_index.store(c.url, KEYS[:4])
    assert policy.choose([a, b, c], _facts()) is a


def test_among_instances_with_the_same_prefix_the_least_loaded_wins():
    policy = KvEvents(pending_secs=0)
    a, b, c = _cands(5, 0, 3)
    for cand in (a, c):
        policy.kv_index.store(cand.url, KEYS)
    assert policy.choose([a, b, c], _facts()) is c


def test_a_match_below_cache_threshold_goes_to_the_least_loaded():
    policy = KvEvents(cache_threshold=0.5, pending_secs=0)
    a, b = _cands(3, 1)
    policy.kv_index.store(a.url, KEYS[:4])  # 4 of 9 blocks
    assert policy.choose([a, b], _facts()) is b
    policy.kv_index.store(a.url, KEYS[:5])  # 5 of 9
    assert policy.choose([a, b], _facts()) is a


def test_imbalanced_load_wins_over_the_cache_with_cache_awares_thresholds():
    policy = KvEvents(balance_abs_threshold=4, balance_rel_threshold=1.5, pending_secs=0)
    a, b = _cands(10, 1)
    policy.kv_index.store(a.url, KEYS)
    assert policy.choose([a, b], _facts()) is b
    a.in_flight = 6  # 6 - 1 > 4 and 6 > 1 * 1.5: still imbalanced
    assert policy.choose([a, b], _facts()) is b
    a.in_flight = 5  # 5 - 1 is not > 4: balanced, the cache decides
    assert policy.choose([a, b], _facts()) is a


def test_a_reported_eviction_or_restart_stops_routing_there():
    policy = KvEvents(pending_secs=0)
    a, b = _cands(0, 1)
    policy.kv_index.store(b.url, KEYS)
    assert policy.choose([a, b], _facts()) is b
    policy.kv_index.remove(b.url, KEYS[:1])
    assert policy.choose([a, b], _facts()) is a
    policy.kv_index.store(b.url, KEYS)
    policy.kv_index.clear(b.url)
    assert policy.choose([a, b], _facts()) is a


def test_block_ids_given_as_facts_are_used_as_they_are_without_text():
    policy = KvEvents(pending_secs=0)
    a, b = _cands(0, 1)
    policy.kv_index.store(b.url, [101, 102, 103])
    assert policy.choose([a, b], RoutingFacts(prompt_blocks=[101, 102, 103, 104])) is b
    assert policy.choose([a, b], _facts(text="", blocks=[101, 102])) is b


def test_text_is_keyed_with_the_configured_block_size():
    a, b = _cands(0, 1)
    policy = KvEvents(block_tokens=32, pending_secs=0)
    policy.kv_index.store(b.url, text_block_keys(PROMPT, 32))
    assert policy.choose([a, b], _facts()) is b
    policy16 = KvEvents(pending_secs=0)
    policy16.kv_index.store(b.url, text_block_keys(PROMPT, 32))
    assert policy16.choose([a, b], _facts()) is a  # other keys: no match


def test_a_burst_of_a_new_prefix_sticks_to_the_first_choice_until_events_could_confirm_it():
    policy = KvEvents(pending_secs=1.0)
    a, b = _cands(0, 0)
    for cand in (a, b):
        policy.kv_index.store(cand.url, [])  # both subscribed, both empty
    first = policy.choose([a, b], _facts(now=0.0))
    first.in_flight += 1  # least loaded alone would now pick the other one
    assert policy.choose([a, b], _facts(now=0.5)) is first
    assert policy.choose([a, b], _facts(now=1.6)) is not first  # the guesses expired unconfirmed


def test_without_pending_secs_nothing_is_guessed():
    policy = KvEvents(pending_secs=0)
    a, b = _cands(0, 0)
    first = policy.choose([a, b], _facts())
    first.in_flight += 1
    assert policy.choose([a, b], _facts()) is not first
    assert len(policy.kv_index) == 0


def test_forget_drops_a_deregistered_instance_from_the_index():
    policy = make_policy("kv_events")
    a, b = _cands(0, 1)
    policy.kv_index.store(b.url, KEYS)  # type: ignore[attr-defined]
    policy.forget(b.url)
    assert policy.kv_index.instances() == []  # type: ignore[attr-defined]
    assert policy.choose([a, b], _facts()) is a


def test_short_or_empty_prompts_go_to_the_least_loaded():
    policy = KvEvents()
    a, b = _cands(2, 1)
    assert policy.choose([a, b], _facts(text="hi")) is b
    assert policy.choose([a, b], RoutingFacts()) is b


@pytest.mark.parametrize("options", [
    {"cache_threshold": 1.5}, {"balance_abs_threshold": -1}, {"block_tokens": 0}, {"pending_secs": -1},
    {"max_blocks": 0}, {"max_blocks_per_instance": 0},
])
def test_bad_options_are_refused_naming_the_option(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        KvEvents(**options)


def test_a_new_prefix_goes_to_the_idle_instance_reporting_the_most_room():
    policy = KvEvents(pending_secs=0)
    a, b, c = _cands(0, 0, 1)
    policy.kv_index.store(a.url, range(1000, 1100))
    policy.kv_index.store(b.url, range(2000, 2010))
    # a and b are equally (least) loaded: b reports fewer blocks; c has none but is busier
    assert policy.choose([a, b, c], _facts()) is b
