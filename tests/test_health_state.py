"""The health state machine: thresholds, transitions, routability (pure, no I/O)."""

from __future__ import annotations

import pytest

from fdrouter.health_state import Health, HealthTracker


def _run(tracker: HealthTracker, outcomes: str) -> list[Health]:
    return [(tracker.observe(o == "+"), tracker.state)[1] for o in outcomes]


def test_three_failures_make_an_instance_unhealthy_and_one_success_resets_the_count():
    t = HealthTracker(failure_threshold=3, success_threshold=2)
    assert _run(t, "--") == [Health.SUSPECT, Health.SUSPECT]
    assert _run(t, "+") == [Health.HEALTHY]
    assert _run(t, "---") == [Health.SUSPECT, Health.SUSPECT, Health.UNHEALTHY]


def test_two_successes_readmit_and_a_failure_while_recovering_starts_over():
    t = HealthTracker(failure_threshold=3, success_threshold=2, state=Health.UNHEALTHY)
    assert _run(t, "+-+") == [Health.RECOVERING, Health.UNHEALTHY, Health.RECOVERING]
    assert _run(t, "+") == [Health.HEALTHY]


def test_transitions_are_reported_once():
    t = HealthTracker(failure_threshold=1, success_threshold=1)
    first = t.observe(False)
    assert first is not None and (first.old, first.new) == (Health.HEALTHY, Health.UNHEALTHY)
    assert t.observe(False) is None
    assert t.observe(True).new is Health.HEALTHY
    assert t.observe(True) is None


def test_only_healthy_and_suspect_are_routable():
    assert [h for h in Health if h.routable] == [Health.HEALTHY, Health.SUSPECT]


def test_thresholds_below_one_are_rejected():
    with pytest.raises(ValueError):
        HealthTracker(failure_threshold=0, success_threshold=2)
