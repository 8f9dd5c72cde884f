"""fd_cache_aware: FastDeploy Go router's prefill scoring of prefix hits against load."""

from __future__ import annotations

import hashlib

import pytest

from fdrouter.policies import RoutingFacts, make_policy
from fdrouter.policies.fd_cache_aware import FdCacheAware, block_hashes

from .candidates import Cand

PROMPT = "You are a helpful assistant. " * 20  # 580 characters: 9 blocks of 64


def facts(text: str, now: float = 0.0) -> RoutingFacts:
    return RoutingFacts(prompt_text=text, prompt_tokens=len(text) // 4, now=now)


def test_block_hashes_chain_whole_blocks_and_are_the_same_in_every_process():
    hashes = block_hashes("abcdefgh" + "xy", 4)
    assert len(hashes) == 2  # the partial block "xy" is not hashed
    assert hashes == block_hashes("abcdefgh", 4)
    assert block_hashes("abcdXfgh", 4)[1] != hashes[1]  # a block matches only with its whole prefix
    # blake2b, not the salted hash(): the same in every process and worker
    assert hashes[0] == hashlib.blake2b(b"abcd", digest_size=8).digest()


def test_a_repeated_prompt_goes_back_to_the_instance_that_has_its_prefix_when_loads_are_equal():
    policy = FdCacheAware()
    a, b = Cand("http://a"), Cand("http://b")
    first = policy.choose([a, b], facts(PROMPT))
    assert policy.choose([a, b], facts(PROMPT + " and more")) is first


def test_the_score_trades_hit_ratio_against_load_with_the_configured_weights():
    # b holds the whole prefix but carries load 3 of max 3; a holds nothing and is idle
    hits_matter = FdCacheAware(hit_ratio_weight=1.0, load_balance_weight=0.05, balance_abs_threshold=100)
    load_matters = FdCacheAware(hit_ratio_weight=0.05, load_balance_weight=1.0, balance_abs_threshold=100)
    for policy in (hits_matter, load_matters):
        policy._record("http://b", PROMPT, 0.0)
    a, b = Cand("http://a", in_flight=0), Cand("http://b", in_flight=3)
    assert hits_matter.choose([a, b], facts(PROMPT)) is b      # 0 + 0.05 beats 1.0 + 0
    assert load_matters.choose([a, b], facts(PROMPT)) is a     # 0.05 + 0 beats 0 + 1.0


def test_imbalanced_load_falls_back_to_fewest_in_flight_tokens_and_records_nothing():
    policy = FdCacheAware(balance_abs_threshold=1, balance_rel_threshold=1.25)  # the Go router's 1 and 0.2
    a = Cand("http://a", in_flight=5, in_flight_tokens=10)
    b = Cand("http://b", in_flight=1, in_flight_tokens=900)
    c = Cand("http://c", in_flight=3, in_flight_tokens=5)
    assert policy.choose([a, b, c], facts(PROMPT)) is c
    assert policy.blocks() == 0


def test_ties_go_to_the_fewest_in_flight_tokens():
    policy = FdCacheAware()
    a, b = Cand("http://a", in_flight_tokens=50), Cand("http://b", in_flight_tokens=20)
    assert policy.choose([a, b], facts(PROMPT)) is b


def test_memory_is_bounded_and_old_entries_are_swept():
    policy = FdCacheAware(cache_block_size=4, max_blocks=100, eviction_duration_secs=10)
    a = Cand("http://a")
    policy.choose([a], facts("x" * 4000, now=0.0))
    assert policy.blocks() == 100  # 1000 blocks sent, the cap holds
    policy.choose([a], facts("short prompt", now=6.0))  # a sweep at duration/2 drops what is > 10 s old
    policy.choose([a], facts("y" * 40, now=11.0))
    assert policy.blocks() == 10 + 3  # only the blocks sent at 6.0 and 11.0 remain


def test_forget_drops_an_instance_from_every_block():
    policy = FdCacheAware()
    a, b = Cand("http://a"), Cand("http://b")
    policy._record("http://a", PROMPT, 0.0)
    policy.forget("http://a")
    assert policy.blocks() == 0
    assert policy.choose([a, b], facts(PROMPT)) is a  # no hits anywhere: ties go to the first


@pytest.mark.parametrize("option", ["hit_ratio_weight", "load_balance_weight", "balance_abs_threshold"])
def test_negative_weights_and_thresholds_are_refused(option):
    with pytest.raises(ValueError, match=option):
        make_policy("fd_cache_aware", **{option: -1})
