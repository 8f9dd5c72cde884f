"""A block-granular prefix KV cache model, shared by the mock backend and the simulator.

Serving engines (vLLM's automatic prefix caching, SGLang's radix cache, FastDeploy's prefix
caching) keep the KV cache of full blocks of prompt tokens and reuse it when a later prompt
starts with the same blocks. A block is identified by a hash chained over every block
before it, so a block only matches when the whole prefix up to it matches. This module
models just that: which leading blocks of a prompt are cached, with LRU eviction beyond a
capacity. Sans-IO, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol

CHARS_PER_TOKEN = 4
"""Tokenizer-free estimate used across fdrouter (OpenAI's rule of thumb for English)."""

DEFAULT_BLOCK_TOKENS = 16
"""Tokens per cache block (vLLM's default block size is 16; FastDeploy uses 64)."""


def text_block_hashes(text: str, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> list[int]:
    """Chained hashes of the full blocks of ``text`` (``block_tokens * 4`` characters each).

    Python's ``hash()``: fast, but salted per process, so only for one process (the simulator).
    Keys that several processes agree on are ``fdrouter.kv_events.hashing.text_block_keys``.
    """
    step = block_tokens * CHARS_PER_TOKEN
    out: list[int] = []
    prev = 0
    for start in range(0, len(text) - step + 1, step):
        prev = hash((prev, text[start:start + step]))
        out.append(prev)
    return out


def token_block_hashes(tokens: Sequence[int], block_tokens: int = DEFAULT_BLOCK_TOKENS) -> list[int]:
    """Chained hashes of the full blocks of a token-id sequence."""
    out: list[int] = []
    prev = 0
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        prev = hash((prev, tuple(tokens[start:start + block_tokens])))
        out.append(prev)
    return out


class CacheListener(Protocol):
    """Told what changed in a ``PrefixCache``: what an engine publishes as KV events (vLLM's
    BlockStored, BlockRemoved, AllBlocksCleared; see ``fdrouter.kv_events``)."""

    def blocks_stored(self, hashes: list[int]) -> None:
        """These blocks were added, in this order."""

    def blocks_removed(self, hashes: list[int]) -> None:
        """These blocks were evicted."""

    def all_cleared(self) -> None:
        """Everything was dropped."""


class PrefixCache:
    """Cached blocks in LRU order, at most ``capacity_blocks`` of them.

    ``listener`` (None by default, and then nothing is spent on it) hears of every block added
    or evicted and of ``clear()``; a lookup that only reorders blocks is not a change.
    """

    __slots__ = ("capacity_blocks", "block_tokens", "_blocks", "hits", "lookups", "listener")

    def __init__(self, capacity_blocks: int, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> None:
        if capacity_blocks < 0:
            raise ValueError("capacity_blocks must be >= 0")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.hits = 0
        self.lookups = 0
        self.listener: CacheListener | None = None

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are cached; those become most recently used."""
        blocks = self._blocks
        n = 0
        for h in hashes:
            if h not in blocks:
                break
            blocks.move_to_end(h)
            n += 1
        self.lookups += 1
        self.hits += n > 0
        return n

    def insert(self, hashes: Iterable[int]) -> None:
        """Cache these blocks (most recently used), evicting least recently used beyond capacity."""
        if self.listener is not None:
            self._insert_telling(hashes, self.listener)
            return
        blocks = self._blocks
        for h in hashes:
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)

    def _insert_telling(self, hashes: Iterable[int], listener: CacheListener) -> None:
        """``insert``, telling the listener what was added, then what was evicted."""
        blocks = self._blocks
        added = []
        for h in hashes:
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
                added.append(h)
        evicted = [blocks.popitem(last=False)[0] for _ in range(len(blocks) - self.capacity_blocks)]
        if added:
            listener.blocks_stored(added)
        if evicted:
            listener.blocks_removed(evicted)

    def lookup_and_insert(self, hashes: Sequence[int]) -> int:
        """What an engine does on admission: count the cached prefix, then cache the whole prompt.

        Returns the number of cached *tokens* (blocks times block size).
        """
        cached = self.match(hashes)
        self.insert(hashes[cached:])
        return cached * self.block_tokens

    def clear(self) -> None:
        """Drop everything (an engine restart)."""
        self._blocks.clear()
        if self.listener is not None:
            self.listener.all_cleared()

    def keys(self) -> list[int]:
        """Every cached block, least recently used first (what a snapshot of the cache publishes)."""
        return list(self._blocks)


__all__ = [
    "CHARS_PER_TOKEN",
    "CacheListener",
    "DEFAULT_BLOCK_TOKENS",
    "PrefixCache",
    "text_block_hashes",
    "token_block_hashes",
]
