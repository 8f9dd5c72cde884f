"""``kv_events``: route to the instance that *reports* the longest cached prefix of the prompt.

``cache_aware`` (SGLang's, and FastDeploy's ``fd_cache_aware``) guesses what each instance
caches from the router's own past decisions: it cannot see an eviction, a restart or a
request that reached the instance another way. llm-d and Dynamo route on what the instances
report instead; this policy does the same. Each instance publishes KV events (blocks
stored, removed, all cleared; ``fdrouter.kv_events``), the router's background subscriber
applies them to ``kv_index``, and ``choose`` reads it. The rule is ``cache_aware``'s, with
the same balance thresholds and their meaning:

1. Load is imbalanced when ``max - min > balance_abs_threshold`` and
   ``max > min * balance_rel_threshold`` (in-flight requests): pick the least loaded.
2. Otherwise find the candidates caching the longest run of the prompt's leading blocks. If
   those blocks are at least ``cache_threshold`` of the prompt's blocks, pick the least loaded
   of them; else the least loaded candidate, and among equally loaded ones the one reporting
   the fewest cached blocks (``cache_aware`` takes the first: under light load it piles every
   new prefix onto one instance).
3. Count the chosen instance as holding the prompt's blocks for ``pending_secs``
   (``KvIndex.speculate``): its events confirm them only once it admitted the request, and
   until then a burst of requests with the same new prefix must not scatter. The events'
   BlockStored confirms a guess (ending it), a clear or restart of the instance ends it; 0
   turns guessing off.

The prompt's blocks are ``facts.prompt_blocks`` when the caller has them (the simulator: its
instances' own cache keys, or a trace's block ids), else the keys of ``facts.prompt_text``
(``kv_events.hashing.text_block_keys``, memoized by ``TextKeyer``, with ``block_tokens``, the
instances' block size: the subscriber refuses an instance announcing another). Apart from the short-lived guesses of
rule 3 the index changes only by events: what it says is what the instances said, as of the
events' delay. ``forget(url)`` drops an instance from the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..kv_events.hashing import TextKeyer
from ..kv_events.index import DEFAULT_MAX_BLOCKS, DEFAULT_MAX_BLOCKS_PER_INSTANCE, KvIndex
from .base import BasePolicy, C, RoutingFacts
from .cache_aware import DEFAULT_BALANCE_ABS_THRESHOLD, DEFAULT_BALANCE_REL_THRESHOLD, DEFAULT_CACHE_THRESHOLD
from .simple import least_loaded

DEFAULT_BLOCK_TOKENS = 16
"""vLLM's default block size, and the mock backend's."""
DEFAULT_PENDING_SECS = 1.0
"""How long the router's own decision counts before the instance's events must confirm it: above
an event's usual delay (a queue wait plus a prefill, then milliseconds on the wire), short enough
that a guess the events never confirm misleads little. In the simulator (shared-prefix, small
caches, event delays 0 to 0.5 s) hit rates were best from 0.5 to 1 s and fell beyond 2 s."""


class KvEvents(BasePolicy):
    """Longest reported cached prefix, balanced by load (see the module docstring)."""

    name = "kv_events"
    needs: ClassVar[frozenset[str]] = frozenset({"prompt_text", "prompt_blocks", "kv_events"})

    def __init__(
        self,
        *,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
        balance_abs_threshold: int = DEFAULT_BALANCE_ABS_THRESHOLD,
        balance_rel_threshold: float = DEFAULT_BALANCE_REL_THRESHOLD,
        block_tokens: int = DEFAULT_BLOCK_TOKENS,
        max_blocks: int = DEFAULT_MAX_BLOCKS,
        max_blocks_per_instance: int = DEFAULT_MAX_BLOCKS_PER_INSTANCE,
        pending_secs: float = DEFAULT_PENDING_SECS,
    ) -> None:
        self.cache_threshold = float(cache_threshold)
        self.balance_abs_threshold = int(balance_abs_threshold)
        self.balance_rel_threshold = float(balance_rel_threshold)
        self.block_tokens = int(block_tokens)
        self.pending_secs = float(pending_secs)
        checks = [
            (0.0 <= self.cache_threshold <= 1.0, f"cache_threshold must be in [0, 1], got {cache_threshold}"),
            (self.balance_abs_threshold >= 0, f"balance_abs_threshold must be >= 0, got {balance_abs_threshold}"),
            (self.balance_rel_threshold >= 0, f"balance_rel_threshold must be >= 0, got {balance_rel_threshold}"),
            (self.block_tokens >= 1, f"block_tokens must be >= 1, got {block_tokens}"),
            (self.pending_secs >= 0, f"pending_secs must be >= 0, got {pending_secs}"),
            (int(max_blocks) >= 1, f"max_blocks must be >= 1, got {max_blocks}"),
            (int(max_blocks_per_instance) >= 1, f"max_blocks_per_instance must be >= 1, got {max_blocks_per_instance}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self._keyer = TextKeyer(self.block_tokens)
        self.kv_index = KvIndex(max_blocks=int(max_blocks), max_blocks_per_instance=int(max_blocks_per_instance))
        """Fed by the router's subscriber (or the simulator's feed); read by ``choose``."""

    def forget(self, url: str) -> None:
        """Drop a deregistered instance from the index."""
        self.kv_index.drop(url)

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        index = self.kv_index
        index.expire(facts.now)
        keys: Sequence[int]
        if facts.prompt_blocks is not None:
            keys = facts.prompt_blocks
        else:
            keys = self._keyer.keys(facts.prompt_text or "")
        choice = self._pick(candidates, keys)
        if self.pending_secs and keys:
            index.speculate(choice.url, keys, facts.now + self.pending_secs)
        return choice

    def _pick(self, candidates: Sequence[C], keys: Sequence[int]) -> C:
        if len(candidates) == 1:
            return candidates[0]
        loads = [c.in_flight for c in candidates]
        high, low = max(loads), min(loads)
        if not keys or high - low > self.balance_abs_threshold and high > low * self.balance_rel_threshold:
            return least_loaded(candidates)
        matched, holders = self.kv_index.match(keys, [c.url for c in candidates])
        if matched and matched / len(keys) >= self.cache_threshold:
            held = set(holders)
            return least_loaded([c for c in candidates if c.url in held])
        # no instance has enough of it: the least loaded, and of those the one reporting the fewest
        # blocks (the most room), so that new prefixes spread over idle instances' caches instead of
        # piling onto the first one
        idle = [c for c in candidates if c.in_flight == low]
        size = self.kv_index.size_of
        return min(idle, key=lambda c: size(c.url))


__all__ = ["DEFAULT_BLOCK_TOKENS", "DEFAULT_PENDING_SECS", "KvEvents"]
