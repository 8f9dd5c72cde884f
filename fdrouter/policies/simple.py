"""Load-only policies: no request content needed beyond a token estimate."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import Candidate, RoutingFacts


class RandomChoice:
    """Uniformly random: FastDeploy's first router's only policy."""

    name = "random"
    needs: frozenset[str] = frozenset()

    def __init__(self, seed: int | None = None) -> None:
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
        return min(candidates, key=lambda c: c.in_flight)


class ProcessTokens:
    """Fewest in-flight prompt tokens, then fewest requests (FastDeploy's prefill default)."""

    name = "process_tokens"
    needs: frozenset[str] = frozenset({"prompt_tokens"})

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate:
        return min(candidates, key=lambda c: (c.in_flight_tokens, c.in_flight))
