"""SGLang's cache-aware load balancer: prefix affinity while load is balanced, load otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from .base import BasePolicy, C, RoutingFacts
from .radix import Key, RadixTree
from .simple import least_loaded

# Defaults from SGLang's router (sgl-router/py_src/sglang_router/router_args.py, RouterArgs):
# cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5,
# eviction_interval_secs 120, max_tree_size 2**26. SGLang applies max_tree_size per worker;
# here it bounds the whole tree.
DEFAULT_CACHE_THRESHOLD = 0.3
DEFAULT_BALANCE_ABS_THRESHOLD = 64
DEFAULT_BALANCE_REL_THRESHOLD = 1.5
DEFAULT_EVICTION_INTERVAL_SECS = 120.0
DEFAULT_MAX_TREE_SIZE = 2**26


class CacheAware(BasePolicy):
    """Route to the instance most likely to hold the prompt's prefix in its KV cache.

    Rule, per request (SGLang's ``cache_aware`` policy):

    1. Load is imbalanced when ``max - min > balance_abs_threshold`` and
       ``max > min * balance_rel_threshold`` (in-flight requests): pick the least loaded.
    2. Otherwise find the candidate whose past prompts share the longest prefix with this
       one. If ``matched / len(prompt) >= cache_threshold`` pick it (several with the same
       match: the least loaded of them); else pick the least loaded candidate, by load and
       not by smallest tree (SGLang #14532).
    3. Record the prompt under the chosen instance.

    The tree (``radix.RadixTree``) holds at most ``max_tree_size`` characters over all
    instances; inserts past it evict least-recently-used entries. Every
    ``eviction_interval_secs`` (on ``facts.now``) entries unused for that long are dropped.
    Instances missing from the candidates are ignored while matching but kept: they may be
    unhealthy only for a while. Without prompt text it falls back to least loaded.

    Given ``facts.prompt_blocks`` (the simulator on a block-id trace) it matches block ids
    instead of characters, with the same rule: the match ratio is then matched blocks over
    the prompt's blocks, and ``max_tree_size`` counts blocks of those prompts.
    """

    name = "cache_aware"
    needs: ClassVar[frozenset[str]] = frozenset({"prompt_text", "prompt_blocks"})

    def __init__(
        self,
        *,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
        balance_abs_threshold: int = DEFAULT_BALANCE_ABS_THRESHOLD,
        balance_rel_threshold: float = DEFAULT_BALANCE_REL_THRESHOLD,
        eviction_interval_secs: float = DEFAULT_EVICTION_INTERVAL_SECS,
        max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
    ) -> None:
        self.cache_threshold = float(cache_threshold)
        self.balance_abs_threshold = int(balance_abs_threshold)
        self.balance_rel_threshold = float(balance_rel_threshold)
        self.eviction_interval_secs = float(eviction_interval_secs)
        max_tree_size = int(max_tree_size)
        checks = [
            (0.0 <= self.cache_threshold <= 1.0, f"cache_threshold must be in [0, 1], got {cache_threshold}"),
            (self.balance_abs_threshold >= 0, f"balance_abs_threshold must be >= 0, got {balance_abs_threshold}"),
            (self.balance_rel_threshold >= 0, f"balance_rel_threshold must be >= 0, got {balance_rel_threshold}"),
            (self.eviction_interval_secs > 0, f"eviction_interval_secs must be > 0, got {eviction_interval_secs}"),
            (max_tree_size > 0, f"max_tree_size must be > 0, got {max_tree_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.tree = RadixTree(max_size=max_tree_size)
        self._next_eviction: float | None = None

    def tree_size(self) -> int:
        """Characters stored in the prefix tree (bounded by ``max_tree_size``)."""
        return self.tree.size()

    def node_count(self) -> int:
        """Nodes in the prefix tree."""
        return self.tree.node_count()

    learns = True

    def forget(self, url: str) -> None:
        """Drop everything recorded for an instance (the router calls this on deregistration)."""
        self.tree.remove_tenant(url)

    def learn(self, url: str, facts: RoutingFacts) -> None:
        """Record another worker's decision, as ``choose`` records its own."""
        key: Key | None = facts.prompt_blocks or facts.prompt_text
        if key:
            self.tree.insert(key, url, facts.now)

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        now = facts.now
        if self._next_eviction is None:
            self._next_eviction = now + self.eviction_interval_secs
        elif now >= self._next_eviction:
            self.tree.evict_older_than(now - self.eviction_interval_secs)
            self._next_eviction = now + self.eviction_interval_secs

        text: Key | None = facts.prompt_blocks or facts.prompt_text
        if not text:
            return least_loaded(candidates)
        choice = self._pick(candidates, text)
        self.tree.insert(text, choice.url, now)
        return choice

    def _pick(self, candidates: Sequence[C], text: Key) -> C:
        if len(candidates) == 1:
            return candidates[0]
        loads = [c.in_flight for c in candidates]
        high, low = max(loads), min(loads)
        if high - low > self.balance_abs_threshold and high > low * self.balance_rel_threshold:
            return least_loaded(candidates)
        matched, holders = self.tree.match(text, {c.url for c in candidates})
        if holders and matched / len(text) >= self.cache_threshold:
            return least_loaded([c for c in candidates if c.url in holders])
        return least_loaded(candidates)


__all__ = [
    "DEFAULT_BALANCE_ABS_THRESHOLD",
    "DEFAULT_BALANCE_REL_THRESHOLD",
    "DEFAULT_CACHE_THRESHOLD",
    "DEFAULT_EVICTION_INTERVAL_SECS",
    "DEFAULT_MAX_TREE_SIZE",
    "CacheAware",
]
