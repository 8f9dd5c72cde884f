"""Session affinity: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2017)."""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import ClassVar

from .base import DEFAULT_SESSION_HEADER, BasePolicy, C, RoutingFacts
from .simple import least_loaded

# 160 points per instance, as ketama (libmemcached) places servers on its ring.
DEFAULT_VIRTUAL_NODES = 160
# No instance above 1.25x the average load, as in Vimeo's HAProxy deployment of the
# algorithm (hash-balance-factor 125) and liblb's ``bounded``.
DEFAULT_LOAD_FACTOR = 1.25
_RING_CACHE_SIZE = 8  # rings for recent candidate lists (health flaps alternate between a few)


def stable_hash(key: str) -> int:
    """A 64-bit hash that is the same in every process (unlike the salted ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class _Ring:
    __slots__ = ("points", "owners", "n")

    def __init__(self, urls: tuple[str, ...], virtual_nodes: int) -> None:
        placed = sorted(
            (stable_hash(f"{url}#{i}"), url) for url in urls for i in range(virtual_nodes)
        )
        self.points = [point for point, _ in placed]
        self.owners = [url for _, url in placed]
        self.n = len(set(urls))


class SessionAffinity(BasePolicy):
    """Requests of one session go to one instance, unless that instance is overloaded.

    Each instance owns ``virtual_nodes`` points on a hash ring; a session key hashes to a
    point and walks clockwise to the first instance whose in-flight count is below
    ``ceil(load_factor * (sum of in-flight + 1) / n)``. Keys only move when their instance
    leaves, a new instance takes their arc, or their instance is over the bound. Without
    a session key it picks the least loaded instance.

    Options: ``session_header`` (default ``x-session-id``: the router reads the key from
    that header, else from the body's ``user``), ``virtual_nodes`` (160, as ketama),
    ``load_factor`` (1.25, as Vimeo's HAProxy set-up; must be >= 1).
    """

    name = "session_affinity"
    needs: ClassVar[frozenset[str]] = frozenset({"session_key"})

    def __init__(
        self,
        *,
        session_header: str = DEFAULT_SESSION_HEADER,
        virtual_nodes: int = DEFAULT_VIRTUAL_NODES,
        load_factor: float = DEFAULT_LOAD_FACTOR,
    ) -> None:
        self.session_header = str(session_header).strip().lower()
        self.virtual_nodes = int(virtual_nodes)
        self.load_factor = float(load_factor)
        if not self.session_header:
            raise ValueError("session_header must not be empty")
        if self.virtual_nodes < 1:
            raise ValueError(f"virtual_nodes must be >= 1, got {virtual_nodes}")
        if self.load_factor < 1.0:
            raise ValueError(f"load_factor must be >= 1 (some instance must fit under the bound), got {load_factor}")
        self._rings: dict[tuple[str, ...], _Ring] = {}

    def _ring(self, urls: tuple[str, ...]) -> _Ring:
        ring = self._rings.get(urls)
        if ring is None:
            if len(self._rings) >= _RING_CACHE_SIZE:
                del self._rings[next(iter(self._rings))]  # oldest first
            ring = self._rings[urls] = _Ring(urls, self.virtual_nodes)
        return ring

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        key = facts.session_key
        if not key or len(candidates) == 1:
            return least_loaded(candidates)
        by_url = {c.url: c for c in candidates}
        ring = self._ring(tuple(by_url))
        bound = math.ceil(self.load_factor * (sum(c.in_flight for c in candidates) + 1) / ring.n)
        points, owners = ring.points, ring.owners
        start = bisect_right(points, stable_hash(key))
        seen: set[str] = set()
        for i in range(len(points)):
            url = owners[(start + i) % len(points)]
            if url in seen:
                continue
            candidate = by_url[url]
            if candidate.in_flight < bound:
                return candidate
            seen.add(url)
            if len(seen) == ring.n:
                break
        return least_loaded(candidates)  # unreachable with load_factor >= 1; kept as a guard


__all__ = ["DEFAULT_LOAD_FACTOR", "DEFAULT_VIRTUAL_NODES", "SessionAffinity", "stable_hash"]
