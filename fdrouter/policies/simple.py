"""Load-only policies: no request content needed beyond a token estimate."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

from .base import BasePolicy, C, RoutingFacts


def least_loaded(candidates: Sequence[C]) -> C:
    """Fewest in-flight requests; ties go to the earliest candidate."""
    return min(candidates, key=lambda c: c.in_flight)


class RandomChoice(BasePolicy):
    """Uniformly random: FastDeploy's first router's only policy."""

    name = "random"
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        return candidates[self._rng.randrange(len(candidates))]


class RoundRobin(BasePolicy):
    """Each candidate in turn; the counter survives candidate-list changes."""

    name = "round_robin"
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        choice = candidates[self._next % len(candidates)]
        self._next += 1
        return choice


class RequestNum(BasePolicy):
    """Fewest in-flight requests; ties go to the earliest candidate (FastDeploy's decode default)."""

    name = "request_num"
    needs: ClassVar[frozenset[str]] = frozenset()

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        return least_loaded(candidates)


class ProcessTokens(BasePolicy):
    """Fewest in-flight prompt tokens, then fewest requests (FastDeploy's prefill default)."""

    name = "process_tokens"
    needs: ClassVar[frozenset[str]] = frozenset({"prompt_tokens"})

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        return min(candidates, key=lambda c: (c.in_flight_tokens, c.in_flight))


class PowerOfTwo(BasePolicy):
    """Two distinct random candidates; the one with fewer in-flight requests wins.

    Ties go to the first one drawn, as in FastDeploy's Go router
    (``internal/scheduler/handler/power_of_two.go``). With one candidate, that one.
    ``seed`` (default None: seeded from the OS) makes the draws reproducible.
    """

    name = "power_of_two"
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1  # distinct from i, still uniform
        first, second = candidates[i], candidates[j]
        return second if second.in_flight < first.in_flight else first


__all__ = ["PowerOfTwo", "ProcessTokens", "RandomChoice", "RequestNum", "RoundRobin", "least_loaded"]
