"""Block keys: the one hash chain that the instances publish and the router computes.

The router has no tokenizer, so the contract is over the prompt *text* the router extracts
(``fdrouter.validate.prompt_text``: chat contents joined with "\\n", a completions prompt as
is), cut into blocks of ``block_tokens * 4`` characters (Unicode code points; 4 characters a
token is the estimate used across fdrouter). Only full blocks count. Block ``i``'s key is::

    digest_i = blake2b(digest_i-1 + utf8(block_i), digest_size=8)     # digest_-1 = b"" (nothing)
    key_i    = int.from_bytes(digest_i, "big")                        # an unsigned 64-bit integer

so a key names the whole prefix up to its block, as vLLM's ``hash_block_tokens`` chains a
block's hash over its parent's (vllm/v1/core/kv_cache_utils.py). blake2b rather than
Python's ``hash()``: that one is salted per process, and the router and every instance
must compute the same keys. It is the scheme of ``fd_cache_aware``'s block hashes too.

A prompt given as token ids is keyed the same way over its ids (each as 4 bytes,
little-endian, modulo 2**32) in blocks of ``block_tokens`` ids: ``token_block_keys``. The router does not
use it yet (it routes on text; see docs/kv_events.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

CHARS_PER_TOKEN = 4
"""Characters per token: ``validate.estimate_tokens``'s and ``sim.kvcache``'s estimate (kept here, not
imported, so the router's import of this module never pulls in the simulator)."""

HASH_SCHEME = "fdrouter-blake2b64-text/1"
"""The name an instance announces in its stream's hello line; the router refuses any other."""

_blake2b = hashlib.blake2b


def text_block_keys(text: str, block_tokens: int) -> list[int]:
    """Chained keys of the full ``block_tokens * 4``-character blocks of ``text``."""
    step = block_tokens * CHARS_PER_TOKEN
    out: list[int] = []
    parent = b""
    for start in range(0, len(text) - step + 1, step):
        parent = _blake2b(parent + text[start:start + step].encode("utf-8", "surrogatepass"), digest_size=8).digest()
        out.append(int.from_bytes(parent, "big"))
    return out


class TextKeyer:
    """``text_block_keys`` with a memo of (previous key, block text) -> key, for the router's hot path.

    The prompts a router sees share long prefixes (system prompts, conversation histories): a
    memo hit costs a dict lookup, ~5 times less than a blake2b call. The memo holds at most
    ``memo_size`` blocks (~200 bytes each) and is simply emptied when full: a hot prefix is back
    in it after one request.
    """

    __slots__ = ("block_tokens", "memo_size", "_memo")

    def __init__(self, block_tokens: int, memo_size: int = 1 << 16) -> None:
        self.block_tokens = block_tokens
        self.memo_size = memo_size
        self._memo: dict[tuple[int, str], int] = {}

    def keys(self, text: str) -> list[int]:
        """The same list as ``text_block_keys(text, self.block_tokens)``."""
        step = self.block_tokens * CHARS_PER_TOKEN
        memo = self._memo
        out: list[int] = []
        prev = -1  # no parent: keys are unsigned, so -1 is never one
        for start in range(0, len(text) - step + 1, step):
            block = text[start:start + step]
            key = memo.get((prev, block))
            if key is None:
                parent = b"" if prev < 0 else prev.to_bytes(8, "big")
                key = int.from_bytes(
                    _blake2b(parent + block.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
                if len(memo) >= self.memo_size:
                    memo.clear()
                memo[(prev, block)] = key
            out.append(key)
            prev = key
        return out


def token_block_keys(tokens: Sequence[int], block_tokens: int) -> list[int]:
    """Chained keys of the full ``block_tokens``-id blocks of a token-id sequence (each id modulo 2**32)."""
    out: list[int] = []
    parent = b""
    pack = struct.Struct(f"<{block_tokens}I").pack
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        parent = _blake2b(parent + pack(*(t & 0xFFFFFFFF for t in tokens[start:start + block_tokens])), digest_size=8).digest()
        out.append(int.from_bytes(parent, "big"))
    return out


__all__ = ["CHARS_PER_TOKEN", "HASH_SCHEME", "TextKeyer", "text_block_keys", "token_block_keys"]
