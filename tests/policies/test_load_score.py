"""Score policies: fd_metrics_score (in-flight counts) and remote_metrics (scraped /metrics)."""

from __future__ import annotations

import pytest

from fdrouter.policies import RemoteMetrics, RoutingFacts, make_policy
from fdrouter.policies.load_score import local_score

from .candidates import Cand


def test_local_score_runs_up_to_max_running_and_weighs_the_rest_as_waiting():
    assert local_score(10, waiting_weight=2.0, max_running=32) == 10
    assert local_score(40, waiting_weight=2.0, max_running=32) == 32 + 8 * 2.0


def test_fd_metrics_score_picks_the_lowest_score():
    a, b = Cand("a", in_flight=5), Cand("b", in_flight=3)
    assert make_policy("fd_metrics_score").choose([a, b], RoutingFacts()) is b


def test_fd_metrics_score_breaks_ties_on_tokens_then_order():
    a = Cand("a", in_flight=2, in_flight_tokens=90)
    b = Cand("b", in_flight=2, in_flight_tokens=10)
    c = Cand("c", in_flight=2, in_flight_tokens=10)
    assert make_policy("fd_metrics_score").choose([a, b, c], RoutingFacts()) is b


def test_fd_metrics_score_waiting_weight_changes_the_choice():
    # Both are past max_running=4: with weight 1, b's one waiting request less wins; with
    # weight 0 waiting is free, both score 4, and fewer in-flight tokens decide.
    a = Cand("a", in_flight=7, in_flight_tokens=10)
    b = Cand("b", in_flight=6, in_flight_tokens=500)
    facts = RoutingFacts()
    assert make_policy("fd_metrics_score", max_running=4).choose([a, b], facts) is b
    assert make_policy("fd_metrics_score", max_running=4, waiting_weight=0).choose([a, b], facts) is a


@pytest.mark.parametrize("options", [{"waiting_weight": -1}, {"max_running": 0}])
def test_fd_metrics_score_rejects_bad_options(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        make_policy("fd_metrics_score", **options)


def fresh(running: float, waiting: float, at: float = 99.0) -> RemoteMetrics:
    return RemoteMetrics(running=running, waiting=waiting, scraped_at=at)


def test_remote_metrics_picks_the_lowest_scraped_score_not_the_local_count():
    # The router sent a fewer requests, but the instance reports more work (other routers).
    a = Cand("a", in_flight=0, remote=fresh(20, 4))
    b = Cand("b", in_flight=9, remote=fresh(5, 0))
    assert make_policy("remote_metrics").choose([a, b], RoutingFacts(now=100.0)) is b


def test_remote_metrics_waiting_weight_changes_the_choice():
    a = Cand("a", remote=fresh(10, 5))  # 15 at weight 1, 20 at weight 2
    b = Cand("b", remote=fresh(18, 0))  # 18 either way
    facts = RoutingFacts(now=100.0)
    assert make_policy("remote_metrics").choose([a, b], facts) is a
    assert make_policy("remote_metrics", waiting_weight=2).choose([a, b], facts) is b


def test_remote_metrics_breaks_ties_on_in_flight_then_order():
    a = Cand("a", in_flight=4, remote=fresh(3, 0))
    b = Cand("b", in_flight=1, remote=fresh(3, 0))
    c = Cand("c", in_flight=1, remote=fresh(3, 0))
    assert make_policy("remote_metrics").choose([a, b, c], RoutingFacts(now=100.0)) is b


def test_remote_metrics_without_a_scrape_uses_the_in_flight_score():
    a = Cand("a", in_flight=2, remote=None)  # local score 2
    b = Cand("b", in_flight=0, remote=fresh(6, 0))
    assert make_policy("remote_metrics").choose([a, b], RoutingFacts(now=100.0)) is a


def test_remote_metrics_ignores_a_stale_scrape_and_uses_the_in_flight_score():
    stale = Cand("a", in_flight=1, remote=fresh(9, 0, at=50.0))  # scrape says busy, 50 s old
    b = Cand("b", in_flight=0, remote=fresh(2, 0, at=99.5))
    policy = make_policy("remote_metrics", stale_after_secs=5)
    assert policy.choose([stale, b], RoutingFacts(now=100.0)) is stale
    assert policy.score(stale, now=100.0) == 1  # from in_flight
    assert policy.score(stale, now=54.0) == 9  # still fresh then


def test_remote_metrics_does_not_herd_onto_one_instance_between_scrapes():
    a = Cand("a", in_flight=0, remote=fresh(1, 0, at=99.9))
    b = Cand("b", in_flight=0, remote=fresh(1, 0, at=99.9))
    policy = make_policy("remote_metrics")
    picks = []
    for _ in range(6):  # the router raises in_flight on dispatch; the scrape stays as it was
        choice = policy.choose([a, b], RoutingFacts(now=100.0))
        choice.in_flight += 1
        picks.append(choice.url)
    assert picks.count("a") == 3 and picks.count("b") == 3


def test_remote_metrics_rejects_a_non_positive_staleness():
    with pytest.raises(ValueError, match="stale_after_secs"):
        make_policy("remote_metrics", stale_after_secs=0)
