"""A per-instance circuit breaker fed by live traffic, written as a table. Sans-IO: the clock is passed in.

Health checks ask an instance "are you up?"; the breaker watches what real requests get. An
instance can answer ``/health`` and still fail every generation (out of KV cache, a wedged
engine): the breaker takes it out of rotation within a few requests instead of a few rounds.

Rules:

    state       on success                          on failure                          on cooldown / probe ok
    closed      closed, failure count reset         closed +1 failure; open at the      -
                                                    failure threshold
    open        -                                   -                                   half_open
    half_open   half_open +1 success; closed at     open                                -
                the success threshold

"cooldown" means ``cooldown_secs`` have passed since the circuit opened; it is applied lazily,
when the breaker is next asked with a ``now``. "probe ok" is a successful health probe of the
instance while its circuit is open (``on_probe_ok``): it ends the cooldown early, so a
recovered instance gets its trial requests at once instead of after the whole cooldown. No result ever reaches an open circuit:
``on_dispatch`` hands out a ticket stamped with the breaker's epoch, the epoch moves on at
every transition, and a result whose ticket is from an earlier epoch is dropped before the
table is read. So a request sent while closed that fails after the circuit opened does not
count twice, and one that finishes in half-open is not mistaken for a trial. The "-" cells
are therefore unreachable through the API; a ticket given to the wrong breaker can reach
them, and raises ``IllegalTransition`` rather than corrupting the state.

Traffic: closed lets everything through; open lets nothing through; half_open lets at most
``half_open_max_requests`` trial requests run at once (counted from ``on_dispatch`` to
``on_result``), so a recovering instance is probed, not flooded. ``allows`` answers the
question; ``on_dispatch`` never refuses: if the answer changed between the two (a PD leg
starts in a task of its own, one loop turn after the instance was picked), the request goes
out as a bystander, with a ticket that takes no trial place and whose result is not counted.
A bookkeeping race must not turn into a 500 for the client.

Defaults are SGLang model gateway's (``CircuitBreakerConfig::default()`` in
sgl-router/src/core/circuit_breaker.rs: 5 consecutive failures open, 2 consecutive successes
close, 30 s before half-open; vllm-router documents the same). SGLang's Python launcher ships
10 / 3 / 60 s instead. SGLang lets every request through in half-open; we cap trials at 1 by
default, the classic pattern (Apollo Router's breaker also sends a single probe), because an
LLM request can hold an instance for minutes.

Like ``health.py`` the breaker is pure: methods return the ``Transition`` (or None) and the
caller logs it and updates metrics once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CircuitState(enum.Enum):
    """Circuit state of one instance; ``value`` is the label string, ``code`` the metrics number."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def code(self) -> int:
        """0 closed, 1 half-open, 2 open: larger is worse, so ``max()`` across instances means something."""
        return _CODES[self]


_CODES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class Event(enum.Enum):
    """What can happen to a breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    COOLDOWN = "cooldown"
    PROBE_OK = "probe_ok"


C, HO, OP = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN

# (state, event) -> (state while counting, state once the count reaches its threshold, counter)
# counter: "fail" counts consecutive failures, "ok" consecutive successes, None resets both.
_TABLE: dict[tuple[CircuitState, Event], tuple[CircuitState, CircuitState, str | None]] = {
    (C, Event.SUCCESS): (C, C, None),
    (C, Event.FAILURE): (C, OP, "fail"),
    (OP, Event.COOLDOWN): (HO, HO, None),
    (OP, Event.PROBE_OK): (HO, HO, None),
    (HO, Event.SUCCESS): (HO, C, "ok"),
    (HO, Event.FAILURE): (OP, OP, None),
}


class IllegalTransition(RuntimeError):
    """An event the breaker's table does not allow in its current state: a bug in the caller."""

    def __init__(self, state: CircuitState, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in circuit state {state.value!r}")
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of circuit state, returned so the caller can log and count it once."""

    old: CircuitState
    new: CircuitState


@dataclass(frozen=True, slots=True)
class Ticket:
    """Handed out by ``on_dispatch``, given back to ``on_result`` for the same request."""

    epoch: int
    """The breaker's epoch at dispatch; -1 for a bystander, whose result is never counted."""
    trial: bool
    """True if the request was sent as a half-open trial."""


_BYSTANDER = Ticket(-1, False)


class CircuitBreaker:
    """Consecutive-outcome circuit breaker for one instance.

    Use, with ``now`` from one monotonic clock (``loop.time()``)::

        candidates = [s for s in instances if s.breaker.allows(now)]   # before the policy picks
        ticket, transition = chosen.breaker.on_dispatch(now)           # as the request goes out
        try:
            ...                                                         # send the request
        finally:
            transition = chosen.breaker.on_result(ticket, ok, loop.time())  # ok: True/False/None

    ``failure_threshold=0`` (or ``CircuitBreaker.disabled()``) disables the breaker: it always
    allows and never changes state.
    """

    __slots__ = (
        "failure_threshold", "success_threshold", "cooldown_secs", "half_open_max_requests",
        "_state", "_epoch", "_failures", "_successes", "_opened_at", "_trials",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 2,
        cooldown_secs: float = 30.0,
        half_open_max_requests: int = 1,
    ) -> None:
        if failure_threshold < 0:
            raise ValueError("failure_threshold must be >= 0 (0 disables the breaker)")
        if success_threshold < 1:
            raise ValueError("success_threshold must be >= 1")
        if cooldown_secs <= 0:
            raise ValueError("cooldown_secs must be > 0")
        if half_open_max_requests < 1:
            raise ValueError("half_open_max_requests must be >= 1")
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.cooldown_secs = cooldown_secs
        self.half_open_max_requests = half_open_max_requests
        self._state = C
        self._epoch = 0
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._trials = 0

    @classmethod
    def disabled(cls) -> CircuitBreaker:
        """A breaker that always allows and never changes state (a registry's default factory)."""
        return cls(failure_threshold=0)

    # -- reading -----------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state as of the last event; an open circuit whose cooldown passed still reads open."""
        return self._state

    def state_at(self, now: float) -> CircuitState:
        """The state at ``now``, counting an elapsed cooldown as half-open (read-only: for metrics)."""
        if self._state is OP and now - self._opened_at >= self.cooldown_secs:
            return HO
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far in closed."""
        return self._failures

    @property
    def trials_in_flight(self) -> int:
        """Half-open trial requests dispatched and not yet resolved."""
        return self._trials

    def allows(self, now: float) -> bool:
        """Whether a new request may be sent to this instance at ``now`` (read-only)."""
        state = self.state_at(now)
        if state is C:
            return True
        if state is HO:
            # after a lazy cooldown no trial has been counted yet
            return self._state is OP or self._trials < self.half_open_max_requests
        return False

    # -- feeding -----------------------------------------------------------------------

    def on_dispatch(self, now: float) -> tuple[Ticket, Transition | None]:
        """Record that a request is being sent; returns its ticket and the cooldown transition, if any.

        Call it after ``allows(now)`` said yes. If the state changed since (see the module
        docstring), the ticket is a bystander's: no trial place taken, no vote.
        """
        transition = self._cooldown(now)
        if self._state is C:
            return Ticket(self._epoch, False), transition
        if self._state is HO and self._trials < self.half_open_max_requests:
            self._trials += 1
            return Ticket(self._epoch, True), transition
        return _BYSTANDER, transition

    def on_result(self, ticket: Ticket, ok: bool | None, now: float) -> Transition | None:
        """Feed the outcome of a dispatched request; returns the transition if the state changed.

        ``ok``: True if the instance answered (any 2xx, or a 4xx that is the request's own
        fault); False if it looks broken (connection refused or reset, timeouts, 5xx); None for
        no verdict (the client hung up, the other PD leg failed first): a trial's place is
        freed, nothing is counted.
        """
        if ticket.epoch != self._epoch:
            return None  # a bystander, or sent under an earlier state: its verdict is stale
        if ticket.trial:
            self._trials -= 1
        if ok is None:
            return None
        return self._apply(Event.SUCCESS if ok else Event.FAILURE, now)

    def on_probe_ok(self, now: float) -> Transition | None:
        """A health probe succeeded: an open circuit goes half-open now (its cooldown ends early).

        In any other state it changes nothing: trials, not probes, close a circuit.
        """
        if self._state is not OP:
            return None
        return self._apply(Event.PROBE_OK, now)

    def poll(self, now: float) -> Transition | None:
        """Apply an elapsed cooldown now (open -> half_open); for callers that want to log it early."""
        return self._cooldown(now)

    # -- the table ---------------------------------------------------------------------

    def _cooldown(self, now: float) -> Transition | None:
        if self._state is OP and now - self._opened_at >= self.cooldown_secs:
            return self._apply(Event.COOLDOWN, now)
        return None

    def _apply(self, event: Event, now: float) -> Transition | None:
        if self.failure_threshold == 0:
            return None  # disabled
        rule = _TABLE.get((self._state, event))
        if rule is None:
            raise IllegalTransition(self._state, event.value)
        counting, reached, counter = rule
        if counter == "fail":
            self._failures += 1
            self._successes = 0
            new = reached if self._failures >= self.failure_threshold else counting
        elif counter == "ok":
            self._successes += 1
            self._failures = 0
            new = reached if self._successes >= self.success_threshold else counting
        else:
            self._failures = self._successes = 0
            new = counting
        old = self._state
        if new is old:
            return None
        # every transition starts a new epoch: outstanding tickets become stale, counts start afresh
        self._state = new
        self._epoch += 1
        self._failures = self._successes = self._trials = 0
        if new is OP:
            self._opened_at = now
        return Transition(old, new)


__all__ = ["CircuitBreaker", "CircuitState", "Event", "IllegalTransition", "Ticket", "Transition"]
