"""FastDeploy Go router's prefill ``cache_aware``: a weighted score of prefix-hit ratio and load.

``cache_aware`` (``cache_aware.py``) is SGLang's algorithm: prefix affinity while load is
balanced, least loaded otherwise. FastDeploy's Go router scores every candidate instead
(``internal/scheduler/handler/prefill_cache_aware.go``)::

    score = (100 - hit%) / 100 * hit_ratio_weight + load / max_load * load_balance_weight

and picks the lowest, ties to the fewest in-flight tokens. ``hit%`` is the share of the
prompt's blocks, from the start, that the instance was already sent (integer percent);
``load`` is its in-flight requests. Blocks are ``cache_block_size`` characters (the Go router
counts Unicode code points when it has no tokenizer), chained by hash so a block matches
only when everything before it matches. When load is imbalanced -- ``max - min >
balance_abs_threshold`` and ``(max - min) / max > balance_rel_threshold`` -- it falls back to
the fewest in-flight prompt tokens (``process_tokens``), as the Go router does. The relative
threshold is written as in ``cache_aware`` (imbalanced when ``max > min * rel``): the Go
router's ``(max - min) / max > r`` is the same test with ``rel = 1 / (1 - r)``, so its default
0.2 is 1.25 here (``fastdeploy_config`` converts a Go config's value).

Memory: a flat map block hash -> {instance: last time sent}, at most ``max_blocks`` entries
(the Go router caps its tree at 200,000 nodes); entries not sent for
``eviction_duration_secs`` (the Go router's ``eviction-duration-mins``) are swept every half
of that, and beyond the cap the least recently sent go first. Hashes are blake2b, the same in
every process. Defaults are the Go router's (``internal/config/config.go``).

Given ``facts.prompt_blocks`` (the simulator on a block-id trace: already chained ids) it
uses those ids as the block hashes instead of hashing ``cache_block_size``-character blocks
of text; the hit ratio is then over the trace's blocks.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

from .base import BasePolicy, C, RoutingFacts


def block_hashes(text: str, block_chars: int) -> list[bytes]:
    """Chained 8-byte hashes of the whole ``block_chars``-character blocks of ``text``."""
    out: list[bytes] = []
    parent = b""
    for start in range(0, len(text) - block_chars + 1, block_chars):
        parent = hashlib.blake2b(parent + text[start:start + block_chars].encode("utf-8", "surrogatepass"),
                                 digest_size=8).digest()
        out.append(parent)
    return out


class FdCacheAware(BasePolicy):
    """FastDeploy Go router's prefill cache_aware scoring (see the module docstring)."""

    name = "fd_cache_aware"
    needs: ClassVar[frozenset[str]] = frozenset({"prompt_text", "prompt_tokens", "prompt_blocks"})

    def __init__(
        self,
        *,
        hit_ratio_weight: float = 1.0,
        load_balance_weight: float = 1.0,
        cache_block_size: int = 64,
        balance_abs_threshold: float = 1.0,
        balance_rel_threshold: float = 1.25,
        eviction_duration_secs: float = 1800.0,
        max_blocks: int = 200_000,
    ) -> None:
        self.hit_ratio_weight = float(hit_ratio_weight)
        self.load_balance_weight = float(load_balance_weight)
        self.cache_block_size = int(cache_block_size)
        self.balance_abs_threshold = float(balance_abs_threshold)
        self.balance_rel_threshold = float(balance_rel_threshold)
        self.eviction_duration_secs = float(eviction_duration_secs)
        self.max_blocks = int(max_blocks)
        checks = [
            (self.hit_ratio_weight >= 0, "hit_ratio_weight must be >= 0"),
            (self.load_balance_weight >= 0, "load_balance_weight must be >= 0"),
            (self.cache_block_size >= 1, "cache_block_size must be >= 1"),
            (self.balance_abs_threshold >= 0, "balance_abs_threshold must be >= 0"),
            (self.balance_rel_threshold >= 1, "balance_rel_threshold must be >= 1 (max > min * rel)"),
            (self.eviction_duration_secs > 0, "eviction_duration_secs must be > 0"),
            (self.max_blocks >= 1, "max_blocks must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self._blocks: OrderedDict[bytes | int, dict[str, float]] = OrderedDict()  # least recently sent first
        self._next_sweep: float | None = None

    def blocks(self) -> int:
        """Block hashes held now (bounded by ``max_blocks``)."""
        return len(self._blocks)

    def forget(self, url: str) -> None:
        """Drop an instance from every block (it was deregistered)."""
        for hash_, holders in list(self._blocks.items()):
            holders.pop(url, None)
            if not holders:
                del self._blocks[hash_]

    def choose(self, candidates: Sequence[C], facts: RoutingFacts) -> C:
        self._sweep(facts.now)
        if len(candidates) == 1:
            choice, hashes = candidates[0], self._hashes(facts)
        else:
            loads = [c.in_flight for c in candidates]
            high, low = max(loads), min(loads)
            if high - low > self.balance_abs_threshold and high > low * self.balance_rel_threshold:
                return min(candidates, key=lambda c: c.in_flight_tokens)  # process_tokens, nothing recorded
            hashes = self._hashes(facts)
            choice = self._score(candidates, hashes, high)
        self._record_hashes(choice.url, hashes, facts.now)
        return choice

    learns = True

    def learn(self, url: str, facts: RoutingFacts) -> None:
        """Record another worker's decision, as ``choose`` records its own."""
        self._record_hashes(url, self._hashes(facts), facts.now)

    def _hashes(self, facts: RoutingFacts) -> Sequence[bytes | int]:
        if facts.prompt_blocks is not None:
            return facts.prompt_blocks
        return block_hashes(facts.prompt_text or "", self.cache_block_size)

    def _score(self, candidates: Sequence[C], hashes: Sequence[bytes | int], max_load: int) -> C:
        hits = dict.fromkeys((c.url for c in candidates), 0)
        blocks = self._blocks
        for depth, hash_ in enumerate(hashes, 1):
            holders = blocks.get(hash_)
            if not holders:
                break
            for url in holders.keys() & hits.keys():
                hits[url] = depth
        total = len(hashes)

        def score(c: C) -> tuple[float, int]:
            hit = hits[c.url] * 100 // total if total else 0
            load = c.in_flight / max_load if max_load else 0.0
            return ((100 - hit) / 100 * self.hit_ratio_weight + load * self.load_balance_weight,
                    c.in_flight_tokens)

        return min(candidates, key=score)

    def _record(self, url: str, text: str, now: float) -> None:
        self._record_hashes(url, block_hashes(text, self.cache_block_size), now)

    def _record_hashes(self, url: str, hashes: Sequence[bytes | int], now: float) -> None:
        blocks = self._blocks
        for hash_ in hashes:
            holders = blocks.get(hash_)
            if holders is None:
                blocks[hash_] = {url: now}
            else:
                holders[url] = now
                blocks.move_to_end(hash_)
        while len(blocks) > self.max_blocks:
            blocks.popitem(last=False)

    def _sweep(self, now: float) -> None:
        if self._next_sweep is None:
            self._next_sweep = now + self.eviction_duration_secs / 2
            return
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.eviction_duration_secs / 2
        horizon = now - self.eviction_duration_secs
        for hash_, holders in list(self._blocks.items()):
            for url in [u for u, sent in holders.items() if sent < horizon]:
                del holders[url]
            if not holders:
                del self._blocks[hash_]


__all__ = ["FdCacheAware", "block_hashes"]
