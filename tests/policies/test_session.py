"""session_affinity: consistent hashing with bounded loads."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import pytest

from fdrouter.policies import RoutingFacts, make_policy
from fdrouter.policies.session import stable_hash

from .candidates import Cand

KEYS = [f"session-{i}" for i in range(10_000)]


def group(n: int) -> list[Cand]:
    return [Cand(f"http://10.0.0.{i}:8000") for i in range(n)]


def assign(policy, candidates) -> dict[str, str]:
    return {key: policy.choose(candidates, RoutingFacts(session_key=key)).url for key in KEYS}


def test_the_same_session_key_goes_to_the_same_instance():
    policy = make_policy("session_affinity")
    candidates = group(8)
    first = {key: policy.choose(candidates, RoutingFacts(session_key=key)) for key in KEYS[:200]}
    for key, choice in first.items():
        assert policy.choose(candidates, RoutingFacts(session_key=key)) is choice


def test_the_mapping_does_not_depend_on_the_process_or_the_candidate_order():
    candidates = group(8)
    forward = assign(make_policy("session_affinity"), candidates)
    backward = assign(make_policy("session_affinity"), list(reversed(candidates)))
    assert forward == backward
    # blake2b, not the per-process salted hash(): the same in every router process
    assert stable_hash("abc") == int.from_bytes(hashlib.blake2b(b"abc", digest_size=8).digest(), "big")


def test_keys_spread_over_all_instances():
    counts = Counter(assign(make_policy("session_affinity"), group(8)).values())
    assert len(counts) == 8
    assert max(counts.values()) < 2 * len(KEYS) / 8


def test_a_hot_session_is_diverted_once_its_instance_reaches_the_bound():
    policy = make_policy("session_affinity", load_factor=1.25)
    candidates = group(4)
    home = policy.choose(candidates, RoutingFacts(session_key="hot"))
    for c in candidates:
        c.in_flight = 2
    # bound = ceil(1.25 * (8 + 1) / 4) = 3: home at 2 is still under it
    assert policy.choose(candidates, RoutingFacts(session_key="hot")) is home
    home.in_flight = 4  # bound = ceil(1.25 * (10 + 1) / 4) = 4: home is at it
    bound = math.ceil(1.25 * (sum(c.in_flight for c in candidates) + 1) / 4)
    assert bound == 4
    diverted = policy.choose(candidates, RoutingFacts(session_key="hot"))
    assert diverted is not home and diverted.in_flight < bound
    home.in_flight = 1  # load went down: back home
    assert policy.choose(candidates, RoutingFacts(session_key="hot")) is home


def test_no_instance_ever_exceeds_the_bound_under_a_single_hot_key():
    policy = make_policy("session_affinity", load_factor=1.25)
    candidates = group(4)
    for _ in range(400):
        bound = math.ceil(1.25 * (sum(c.in_flight for c in candidates) + 1) / 4)
        choice = policy.choose(candidates, RoutingFacts(session_key="the-same-key"))
        assert choice.in_flight < bound
        choice.in_flight += 1
    loads = [c.in_flight for c in candidates]
    assert max(loads) <= math.ceil(1.25 * sum(loads) / 4)


def test_without_a_session_key_it_picks_the_least_loaded():
    a, b, c = Cand("a", in_flight=3), Cand("b", in_flight=1), Cand("c", in_flight=1)
    assert make_policy("session_affinity").choose([a, b, c], RoutingFacts()) is b


def test_removing_an_instance_moves_only_its_keys():
    n = 8
    policy = make_policy("session_affinity")
    before = assign(policy, group(n))
    removed = group(n)[3].url
    after = assign(policy, [c for c in group(n) if c.url != removed])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == removed for k in moved)
    assert {k for k in KEYS if before[k] == removed} == set(moved)
    assert 0.5 / n < len(moved) / len(KEYS) < 2 / n


def test_adding_an_instance_moves_only_keys_to_it():
    n = 8
    policy = make_policy("session_affinity")
    before = assign(policy, group(n))
    after = assign(policy, group(n + 1))
    new = group(n + 1)[n].url
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == new for k in moved)
    assert 0.5 / (n + 1) < len(moved) / len(KEYS) < 2 / n


def test_the_session_header_option_is_kept_lower_case_for_the_router():
    assert make_policy("session_affinity").session_header == "x-session-id"
    assert make_policy("session_affinity", session_header="X-User-Id").session_header == "x-user-id"


@pytest.mark.parametrize(
    "options", [{"load_factor": 0.9}, {"virtual_nodes": 0}, {"session_header": " "}]
)
def test_bad_options_are_rejected_naming_them(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        make_policy("session_affinity", **options)
