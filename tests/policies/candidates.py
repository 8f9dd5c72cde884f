"""The one stand-in for an instance the policy tests use: only what the Candidate protocol has."""

from __future__ import annotations

from dataclasses import dataclass

from fdrouter.policies import RemoteMetrics


@dataclass
class Cand:
    url: str
    in_flight: int = 0
    in_flight_tokens: int = 0
    remote: RemoteMetrics | None = None
