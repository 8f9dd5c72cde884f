"""The circuit breaker state table (pure: the clock is a number we pass in)."""

from __future__ import annotations

import pytest

from fdrouter.breaker import CircuitBreaker, CircuitState, IllegalTransition, Ticket, Transition

C, HO, OP = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN


def _fail(b: CircuitBreaker, n: int, now: float = 0.0) -> list[Transition | None]:
    out = []
    for _ in range(n):
        ticket, _ = b.on_dispatch(now)
        out.append(b.on_result(ticket, False, now))
    return out


def _succeed(b: CircuitBreaker, n: int, now: float) -> list[Transition | None]:
    out = []
    for _ in range(n):
        ticket, _ = b.on_dispatch(now)
        out.append(b.on_result(ticket, True, now))
    return out


def test_defaults_are_sglang_gateways():
    b = CircuitBreaker()
    assert (b.failure_threshold, b.success_threshold, b.cooldown_secs, b.half_open_max_requests) == (5, 2, 30.0, 1)


def test_state_values_and_metric_codes():
    assert [s.value for s in (C, HO, OP)] == ["closed", "half_open", "open"]
    assert [s.code for s in (C, HO, OP)] == [0, 1, 2]


def test_full_cycle_opens_at_the_threshold_half_opens_after_cooldown_and_closes_after_successes():
    b = CircuitBreaker(failure_threshold=3, success_threshold=2, cooldown_secs=10)
    assert _fail(b, 3, now=100.0) == [None, None, Transition(C, OP)]
    assert b.state is OP and not b.allows(100.0) and not b.allows(109.9)

    # the cooldown is applied lazily: reading is side-effect free, dispatching applies it
    assert b.allows(110.0) and b.state_at(110.0) is HO and b.state is OP
    ticket, transition = b.on_dispatch(110.0)
    assert transition == Transition(OP, HO) and ticket.trial
    assert b.on_result(ticket, True, 111.0) is None
    assert b.state is HO
    assert _succeed(b, 1, now=112.0) == [Transition(HO, C)]
    assert b.state is C and b.allows(112.0)


def test_a_single_failure_in_half_open_reopens_and_restarts_the_cooldown():
    b = CircuitBreaker(failure_threshold=3, cooldown_secs=10)
    _fail(b, 3, now=0.0)
    ticket, _ = b.on_dispatch(10.0)
    assert b.on_result(ticket, False, 12.0) == Transition(HO, OP)
    assert not b.allows(21.9)  # cooldown counts from the reopening at 12, not the first opening
    assert b.allows(22.0)


def test_half_open_lets_at_most_the_configured_trials_run_at_once():
    b = CircuitBreaker(failure_threshold=1, success_threshold=3, cooldown_secs=1, half_open_max_requests=2)
    _fail(b, 1)
    first, _ = b.on_dispatch(1.0)
    second, _ = b.on_dispatch(1.0)
    assert b.trials_in_flight == 2 and not b.allows(1.0)
    b.on_result(first, True, 2.0)  # one trial back: room for one more
    assert b.allows(2.0)
    assert b.on_result(second, None, 2.0) is None  # no verdict still frees the place
    assert b.trials_in_flight == 0 and b.state is HO


def test_a_success_in_closed_resets_the_failure_count():
    b = CircuitBreaker(failure_threshold=3)
    _fail(b, 2)
    assert b.failures == 2
    _succeed(b, 1, now=0.0)
    assert b.failures == 0
    assert _fail(b, 2) == [None, None] and b.state is C


def test_results_of_requests_sent_before_the_circuit_opened_are_ignored():
    b = CircuitBreaker(failure_threshold=2, cooldown_secs=10)
    slow, _ = b.on_dispatch(0.0)  # a long stream, sent while closed
    _fail(b, 2, now=1.0)
    assert b.state is OP
    assert b.on_result(slow, False, 2.0) is None  # neither counted nor illegal
    trial, _ = b.on_dispatch(11.0)
    assert b.on_result(slow, True, 12.0) is None  # not mistaken for the trial
    assert b.state is HO and b.trials_in_flight == 1
    b.on_result(trial, None, 13.0)


def test_a_request_sent_after_the_state_changed_under_it_goes_out_as_a_bystander_without_a_vote():
    # a PD leg starts one loop turn after its instance was picked; meanwhile the only trial place went
    b = CircuitBreaker(failure_threshold=1, cooldown_secs=10)
    _fail(b, 1)
    assert b.allows(10.0)
    trial, _ = b.on_dispatch(10.0)
    late, transition = b.on_dispatch(10.0)  # no error: a bookkeeping race must not fail the request
    assert not late.trial and transition is None and b.trials_in_flight == 1
    assert b.on_result(late, False, 11.0) is None and b.state is HO  # its failure is not counted
    assert b.on_result(trial, False, 12.0) == Transition(HO, OP)
    bystander, _ = b.on_dispatch(13.0)  # open, cooldown running
    assert b.on_result(bystander, True, 14.0) is None and b.state is OP


def test_a_ticket_that_is_not_this_breakers_raises_instead_of_corrupting_state():
    b = CircuitBreaker(failure_threshold=1, cooldown_secs=10)
    _fail(b, 1)  # closed (epoch 0) -> open (epoch 1)
    stray = Ticket(epoch=1, trial=False)  # another breaker's, matching the open epoch by chance
    with pytest.raises(IllegalTransition, match="'success' is not allowed in circuit state 'open'") as info:
        b.on_result(stray, True, 1.0)
    assert (info.value.state, info.value.event) == (OP, "success")
    assert b.state is OP


def test_the_disabled_factory_never_opens():
    b = CircuitBreaker.disabled()
    assert _fail(b, 100) == [None] * 100
    assert b.state is C and b.allows(0.0)


def test_a_zero_failure_threshold_disables_the_breaker():
    b = CircuitBreaker(failure_threshold=0)
    assert _fail(b, 50) == [None] * 50
    assert b.state is C and b.allows(0.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": -1}, {"success_threshold": 0}, {"cooldown_secs": 0}, {"half_open_max_requests": 0}],
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)
