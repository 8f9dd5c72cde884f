"""The policy protocol and the two things a policy sees: candidates and routing facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

# Routing facts a policy may ask for in ``needs``; the router extracts only those. Two are
# background jobs rather than facts: ``remote_metrics`` (the /metrics scraper fills
# ``Candidate.remote``) and ``kv_events`` (the KV-event subscriber fills the policy's own
# ``kv_index``, a ``fdrouter.kv_events.KvIndex``, with keys of ``block_tokens``-token blocks).
FACTS = frozenset({"prompt_tokens", "prompt_text", "prompt_blocks", "session_key", "remote_metrics", "kv_events"})


@dataclass(frozen=True, slots=True)
class RemoteMetrics:
    """One scrape of an instance's ``/metrics`` (FastDeploy's gauges), and when it was taken."""

    running: float
    """``fastdeploy:num_requests_running``."""
    waiting: float
    """``fastdeploy:num_requests_waiting``."""
    scraped_at: float
    """Clock reading (the same clock as ``RoutingFacts.now``) when the scrape finished."""


class Candidate(Protocol):
    """What a policy may read of an instance (the router passes its live state, read-only).

    The simulator passes its own objects with the same attributes.
    """

    url: str
    """Unique name of the instance (``http://host:port`` in the router)."""
    in_flight: int
    """Requests this router has dispatched there and not seen finish."""
    in_flight_tokens: int
    """Sum of the estimated prompt tokens of those requests."""
    remote: RemoteMetrics | None
    """Last background scrape of the instance's ``/metrics``; None until one succeeded."""


@dataclass(slots=True)
class RoutingFacts:
    """What the router extracted from one request: only what the policy's ``needs`` asked for."""

    prompt_tokens: int = 0
    """Estimated prompt tokens (``len(text) // 4``); needs ``prompt_tokens``."""
    prompt_text: str | None = None
    """The prompt as one string (chat contents joined); needs ``prompt_text``."""
    prompt_blocks: tuple[int, ...] | None = None
    """The prompt as chained block ids, when the caller has them: the k-th id stands for blocks
    0..k, so equal ids mean an equal prefix up to there. Needs ``prompt_blocks``. The simulator
    fills it with the keys its instances' caches use (a block-id trace's ``hash_ids``, or its text
    hashes) and then leaves ``prompt_text`` None unless another policy of the run reads only text;
    the live router never fills it (it sees text only). A policy that asks for it must also work
    from ``prompt_text``."""
    session_key: str | None = None
    """Session id from the configured header or the body's ``user``; needs ``session_key``."""
    now: float = 0.0
    """The caller's clock (event-loop time in the router, simulated time in the simulator)."""


C = TypeVar("C", bound=Candidate)
"""The caller's candidate type: ``choose`` returns one of the objects it was given (the router's
``InstanceState``, the simulator's ``SimInstance``), so both type-check without casts."""

DEFAULT_SESSION_HEADER = "x-session-id"


class Policy(Protocol):
    """One signature for every policy: pick one of ``candidates`` (never empty).

    ``session_header`` and ``forget`` have defaults in ``BasePolicy``; a registered class that
    does not derive from it gets them anyway (``register_policy`` mixes them in).
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    session_header: str
    """Request header the router reads the session key from (policies that need ``session_key``)."""

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C: ...

    def forget(self, url: str) -> None:
        """Drop per-instance state: the router calls it when ``url`` is deregistered."""

    learns: ClassVar[bool]
    """Whether the policy learns from its own decisions (cache-aware ones): then every worker of a
    multi-worker router tells the others what it decided, and they ``learn`` it."""

    def learn(self, url: str, facts: RoutingFacts) -> None:
        """Record that another process of this router sent a request with ``facts`` to ``url``."""


class BasePolicy:
    """The protocol's defaults: no routing facts, the ``x-session-id`` header, nothing to forget."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    session_header: str = DEFAULT_SESSION_HEADER

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        raise NotImplementedError

    def forget(self, url: str) -> None:
        """Nothing to drop by default."""

    learns: ClassVar[bool] = False

    def learn(self, url: str, facts: RoutingFacts) -> None:
        """Nothing to learn by default."""


__all__ = ["DEFAULT_SESSION_HEADER", "FACTS", "BasePolicy", "C", "Candidate", "Policy", "RemoteMetrics", "RoutingFacts"]
