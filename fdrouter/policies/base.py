"""The policy protocol and the two things a policy sees: candidates and routing facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol


class Candidate(Protocol):
    """What a policy may read of an instance (the router passes its live state, read-only)."""

    url: str
    in_flight: int
    in_flight_tokens: int


@dataclass(slots=True)
class RoutingFacts:
    """What the router extracted from one request: only what the policy's ``needs`` asked for."""

    prompt_tokens: int = 0
    prompt_text: str | None = None
    session_key: str | None = None


class Policy(Protocol):
    """One signature for every policy: pick one of ``candidates`` (never empty)."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]]

    def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate: ...
