"""One upstream leg's bookkeeping: the instance's load and its circuit breaker's verdict.

A leg is opened when an instance is picked -- its load counts from that moment, so two
requests picked in the same event-loop turn already see each other -- and finished exactly
once, whatever happens: normally, by an error, by cancellation, or by the caller's
``finally`` when the leg's task never got to run (a PD leg cancelled by its partner).

Breaker verdicts (what says something about the instance's health):

- a 2xx answer's headers: success, at once (``answered``) -- a half-open trial ends at the
  first byte, not after a whole generation;
- connection failures, timeouts, and 502/503/504 answers: failure;
- a 4xx answer: success (the instance is alive; the request was wrong);
- a 500 (or another 5xx) answer: no verdict, but a health probe of the instance is asked for
  (``on_suspect``): a 500 is usually tied to one client's request, and one client's bad
  requests must not open an instance's circuit for everyone; if the instance is really sick,
  the probe says so;
- the client leaving, or the other PD leg failing first: no verdict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from .breaker import Transition
from .errors import ClientDisconnected, RouterError, UpstreamError, UpstreamStatus
from .registry import InstanceState

log = logging.getLogger(__name__)

# Statuses that say the instance itself is in trouble (overloaded, restarting, a broken gateway).
SICK_STATUSES = frozenset({502, 503, 504})


def verdict(error: RouterError) -> bool | None:
    """What an error says about the instance: False sick, True alive, None nothing (see above)."""
    if isinstance(error, ClientDisconnected):
        return None
    if isinstance(error, UpstreamStatus):
        if error.status < 500:
            return True
        return False if error.status in SICK_STATUSES else None
    return False if isinstance(error, UpstreamError) else None


class Leg:
    """Load and circuit accounting of one leg; an async context manager, finished exactly once."""

    __slots__ = ("instance", "tokens", "_ticket", "_finished", "_verdict_given", "_on_transition", "_on_error",
                 "_on_suspect")

    def __init__(self, instance: InstanceState, tokens: int, now: float, *,
                 on_transition: Callable[[InstanceState, Transition | None], None],
                 on_error: Callable[[InstanceState, RouterError], None],
                 on_suspect: Callable[[InstanceState], None]) -> None:
        self.instance = instance
        self.tokens = tokens
        instance.add_load(1, tokens)
        self._ticket, transition = instance.breaker.on_dispatch(now)
        self._finished = False
        self._verdict_given = False
        self._on_transition = on_transition
        self._on_error = on_error
        self._on_suspect = on_suspect
        on_transition(instance, transition)

    def answered(self) -> None:
        """The instance answered 2xx headers: it works. Records the success now (once)."""
        self._give_verdict(True)

    def finish(self, outcome: bool | None = None) -> None:
        """Give the load back and the verdict (if none was given yet). Idempotent."""
        if self._finished:
            return
        self._finished = True
        self.instance.add_load(-1, -self.tokens)
        self._give_verdict(outcome)

    def _give_verdict(self, outcome: bool | None) -> None:
        if self._verdict_given:
            return
        self._verdict_given = True
        now = asyncio.get_running_loop().time()
        self._on_transition(self.instance, self.instance.breaker.on_result(self._ticket, outcome, now))

    async def __aenter__(self) -> Leg:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            self.finish(True)
            return
        if not isinstance(exc, RouterError):
            self.finish(None)  # cancelled, or a bug: says nothing about the instance
            return
        if exc.instance is None:
            exc.instance = self.instance.url
        outcome = None if self._verdict_given else verdict(exc)
        server_error = isinstance(exc, UpstreamStatus) and exc.status >= 500
        if outcome is False or server_error:
            self._on_error(self.instance, exc)  # counted in metrics either way
        if outcome is None and server_error and not self._verdict_given:
            self._on_suspect(self.instance)
        self.finish(outcome)


__all__ = ["SICK_STATUSES", "Leg", "verdict"]
