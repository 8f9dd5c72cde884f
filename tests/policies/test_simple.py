"""Load-only policies: random, round_robin, request_num, process_tokens, power_of_two."""

from __future__ import annotations

from collections import Counter

from fdrouter.policies import RoutingFacts, least_loaded, make_policy

from .candidates import Cand

FACTS = RoutingFacts()


def cands(*loads: int) -> list[Cand]:
    return [Cand(f"http://i{n}:1", in_flight=load) for n, load in enumerate(loads)]


def test_least_loaded_picks_fewest_in_flight_and_the_earliest_on_ties():
    a, b, c = cands(3, 1, 1)
    assert least_loaded([a, b, c]) is b


def test_request_num_picks_fewest_in_flight_and_the_earliest_on_ties():
    a, b, c = cands(2, 0, 0)
    assert make_policy("request_num").choose([a, b, c], FACTS) is b


def test_process_tokens_picks_fewest_tokens_then_fewest_requests():
    a = Cand("a", in_flight=1, in_flight_tokens=100)
    b = Cand("b", in_flight=3, in_flight_tokens=50)
    c = Cand("c", in_flight=2, in_flight_tokens=50)
    assert make_policy("process_tokens").choose([a, b, c], FACTS) is c


def test_round_robin_takes_each_candidate_in_turn():
    policy = make_policy("round_robin")
    group = cands(0, 0, 0)
    assert [policy.choose(group, FACTS).url for _ in range(4)] == [c.url for c in group + group[:1]]


def test_random_is_reproducible_for_a_seed():
    group = cands(*[0] * 10)
    runs = [[make_policy("random", seed=7).choose(group, FACTS).url for _ in range(30)] for _ in range(2)]
    assert runs[0] == runs[1]


def test_power_of_two_picks_the_less_loaded_of_two_distinct_candidates():
    # With two candidates both are always drawn, so the less loaded always wins.
    busy, idle = cands(5, 1)
    policy = make_policy("power_of_two", seed=1)
    assert all(policy.choose([busy, idle], FACTS) is idle for _ in range(50))


def test_power_of_two_never_picks_the_most_loaded_of_three():
    group = cands(1, 2, 9)
    policy = make_policy("power_of_two", seed=3)
    picks = Counter(policy.choose(group, FACTS).url for _ in range(300))
    assert group[2].url not in picks
    assert picks[group[0].url] > picks[group[1].url] > 0  # i0 wins 2 of 3 pairs, i1 wins 1


def test_power_of_two_on_a_tie_takes_the_first_drawn_so_both_get_picked():
    group = cands(4, 4)
    policy = make_policy("power_of_two", seed=5)
    picks = Counter(policy.choose(group, FACTS).url for _ in range(200))
    assert set(picks) == {c.url for c in group}


def test_power_of_two_is_deterministic_for_a_seed():
    group = cands(*[0] * 16)
    runs = [[make_policy("power_of_two", seed=42).choose(group, FACTS).url for _ in range(50)] for _ in range(2)]
    assert runs[0] == runs[1]
    other = [make_policy("power_of_two", seed=43).choose(group, FACTS).url for _ in range(50)]
    assert other != runs[0]


def test_power_of_two_with_one_candidate_returns_it():
    (only,) = cands(3)
    assert make_policy("power_of_two").choose([only], FACTS) is only
