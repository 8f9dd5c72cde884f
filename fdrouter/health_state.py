"""Instance health as a state machine with thresholds, written as a table.

Rules (FastDeploy's Go router and SGLang use the same defaults: 3 failures down, 2 successes up):

    state       on ok                              on fail
    healthy     healthy                            suspect (1 failure; unhealthy at the threshold)
    suspect     healthy                            suspect, +1 failure; unhealthy at the threshold
    unhealthy   recovering (1 success; healthy     unhealthy
                at the threshold)
    recovering  recovering, +1 success; healthy    unhealthy
                at the threshold

healthy and suspect instances get traffic; unhealthy and recovering ones do not. One failed
check never removes an instance: that was one of FastDeploy's first router's bugs.
The tracker is pure: it is fed outcomes and returns the transition, the caller logs it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Health(enum.Enum):
    """Health state of one instance."""

    HEALTHY = "healthy"
    SUSPECT = "suspect"
    UNHEALTHY = "unhealthy"
    RECOVERING = "recovering"

    @property
    def routable(self) -> bool:
        """Whether an instance in this state receives traffic."""
        return self in (Health.HEALTHY, Health.SUSPECT)


H, S, U, R = Health.HEALTHY, Health.SUSPECT, Health.UNHEALTHY, Health.RECOVERING

# (state, ok) -> (state while counting, state once the count reaches its threshold, counter)
# counter: "fail" counts consecutive failures, "ok" consecutive successes, None resets both.
_TABLE: dict[tuple[Health, bool], tuple[Health, Health, str | None]] = {
    (H, True): (H, H, None),
    (H, False): (S, U, "fail"),
    (S, True): (H, H, None),
    (S, False): (S, U, "fail"),
    (U, True): (R, H, "ok"),
    (U, False): (U, U, None),
    (R, True): (R, H, "ok"),
    (R, False): (U, U, None),
}


@dataclass(frozen=True)
class Transition:
    """A change of health state, returned so the caller can log it once."""

    old: Health
    new: Health


class HealthTracker:
    """Consecutive-outcome counting for one instance."""

    __slots__ = ("state", "failures", "successes", "failure_threshold", "success_threshold")

    def __init__(self, *, failure_threshold: int, success_threshold: int, state: Health = H) -> None:
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("health thresholds must be >= 1")
        self.state = state
        self.failures = 0
        self.successes = 0
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold

    def observe(self, ok: bool) -> Transition | None:
        """Feed one check outcome; return the transition if the state changed."""
        counting, reached, counter = _TABLE[(self.state, ok)]
        if counter == "fail":
            self.failures += 1
            self.successes = 0
            new = reached if self.failures >= self.failure_threshold else counting
        elif counter == "ok":
            self.successes += 1
            self.failures = 0
            new = reached if self.successes >= self.success_threshold else counting
        else:
            self.failures = self.successes = 0
            new = counting
        if new is Health.HEALTHY or new is Health.UNHEALTHY:
            # a settled state starts counting afresh
            self.failures = self.successes = 0
        old, self.state = self.state, new
        return Transition(old, new) if old is not new else None


__all__ = ["Health", "HealthTracker", "Transition"]
