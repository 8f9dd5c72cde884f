"""The ``prompt_blocks`` routing fact: prefix policies match block ids when given them, text otherwise."""

from __future__ import annotations

from fdrouter.policies import FACTS, RoutingFacts, make_policy
from fdrouter.sim.block_requests import chain_blocks

from .candidates import Cand


def blocks(*ids: int) -> RoutingFacts:
    return RoutingFacts(prompt_blocks=chain_blocks(ids), prompt_tokens=512 * len(ids))


def test_prompt_blocks_is_a_fact_the_prefix_policies_ask_for():
    assert "prompt_blocks" in FACTS
    for name in ("cache_aware", "fd_cache_aware"):
        needs = make_policy(name).needs
        assert {"prompt_text", "prompt_blocks"} <= needs  # text stays: the live router has no blocks


def test_cache_aware_sends_a_prompt_sharing_leading_blocks_where_those_blocks_went():
    a, b, c = Cand("a"), Cand("b"), Cand("c")
    policy = make_policy("cache_aware")
    assert policy.choose([a, b, c], blocks(1, 2, 3, 4)) is a
    a.in_flight = 2
    assert policy.choose([a, b, c], blocks(1, 2, 3, 9)) is a  # 3 of 4 blocks match: above 0.3
    assert policy.choose([a, b, c], blocks(5, 6)) is b  # nothing matches: least loaded
    assert policy.tree_size() == 4 + 1 + 2  # the tree counts blocks for block prompts


def test_cache_aware_does_not_match_blocks_after_a_different_first_block():
    a, b = Cand("a"), Cand("b", in_flight=1)
    policy = make_policy("cache_aware")
    policy.choose([a, b], blocks(1, 2, 3))
    a.in_flight = 2
    # same ids 2 and 3, but after another first block: chained ids differ, so no match
    assert policy.choose([a, b], blocks(7, 2, 3)) is b


def test_cache_aware_keeps_matching_text_when_no_blocks_are_given():
    a, b = Cand("a"), Cand("b")
    policy = make_policy("cache_aware")
    text = "You are a helpful assistant. " * 20
    assert policy.choose([a, b], RoutingFacts(prompt_text=text + "first")) is a
    a.in_flight = 3
    assert policy.choose([a, b], RoutingFacts(prompt_text=text + "second")) is a
    assert policy.choose([a, b], blocks(1, 2)) is b  # blocks never match text


def test_fd_cache_aware_scores_the_hit_ratio_over_the_block_ids():
    a, b = Cand("a", in_flight=1), Cand("b", in_flight=0)
    policy = make_policy("fd_cache_aware", balance_abs_threshold=10)
    policy._record_hashes("a", chain_blocks([1, 2, 3, 4]), 0.0)
    # a: 100% hit, load 1/1 -> 0 + 1.0; b: 0% hit, load 0 -> 1.0 + 0: a tie, broken by tokens (equal) -> a
    assert policy.choose([a, b], blocks(1, 2, 3, 4)) is a
    # a: 25% hit -> 0.75 + 1.0 = 1.75; b: 1.0: b
    assert policy.choose([a, b], blocks(1, 8, 9, 10)) is b
    assert policy.blocks() == 4 + 3  # recorded the chosen prompt's blocks, nothing hashed from text
