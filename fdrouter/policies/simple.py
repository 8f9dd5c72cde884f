"""Load-only policies: no request content needed beyond a token estimate."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import Candidate, RoutingFacts


def least_loaded(candidates: Sequence[Candidate]) -> Candidate:
    """Fewest in-flight requests; ties go to the earliest candidate."""
    return min(candidates, key=lambda c: c.in_flight)


class RandomChoice:
    """Uniformly random: FastDeploy's first router's only policy."""

    name = "random"
    needs: frozenset[str] = frozenset()

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        return candidates[self._rng.randrange(len(candidates))]


class RoundRobin:
    """Each candidate in turn; the counter survives candidate-list changes."""

    name = "round_robin"
    needs: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        choice = candidates[self._next % len(candidates)]
        self._next += 1
        return choice


class RequestNum:
    """Fewest in-flight requests; ties go to the earliest candidate (FastDeploy's decode default)."""

    name = "request_num"
    needs: frozenset[str] = frozenset()

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        return least_loaded(candidates)


class ProcessTokens:
    """Fewest in-flight prompt tokens, then fewest requests (FastDeploy's prefill default)."""

    name = "process_tokens"
    needs: frozenset[str] = frozenset({"prompt_tokens"})

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        return min(candidates, key=lambda c: (c.in_flight_tokens, c.in_flight))


class PowerOfTwo:
    """Two distinct random candidates; the one with fewer in-flight requests wins.

    Ties go to the first one drawn, as in FastDeploy's Go router
    (``internal/scheduler/handler/power_of_two.go``). With one candidate, that one.
    ``seed`` (default None: seeded from the OS) makes the draws reproducible.
    """

    name = "power_of_two"
    needs: frozenset[str] = frozenset()

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1  # distinct from i, still uniform
        first, second = candidates[i], candidates[j]
        return second if second.in_flight < first.in_flight else first
