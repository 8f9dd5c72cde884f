"""Prompt -> prefix-cache block hashes, with a memo for prefixes that many prompts share.

``kvcache.text_block_hashes`` hashes every block of every prompt; a 3000-token system
prompt is ~190 blocks, and hashing them again for each of 100k requests would be most of a
run's time. When a request names the ``prefix`` it shares (``Request.prefix``: the same str
object as an earlier request's prefix or prompt), the prefix's blocks come from the memo
and only the rest is hashed. Prompts hashed with a hint are remembered too, so the next
turn of a conversation, whose prefix is this turn's prompt, finds them. The result is
always identical to ``text_block_hashes`` (a test checks).
"""

from __future__ import annotations

from .kvcache import CHARS_PER_TOKEN, text_block_hashes

MEMO_SIZE = 2048
"""Texts remembered, least recently used forgotten first. Enough for a few shared system
prompts plus the last turns of the conversations of a multi-turn workload."""


class BlockHasher:
    """``text_block_hashes`` with a memo of the texts named as (or hashed with) a prefix hint."""

    def __init__(self, block_tokens: int) -> None:
        self.block_tokens = block_tokens
        self._step = block_tokens * CHARS_PER_TOKEN
        # id(text) -> (text, its hashes). Keyed by identity, not by value: hashing a long
        # prompt string costs as much as a tenth of hashing its blocks. Holding the text
        # keeps its id from being reused while the entry lives.
        self._memo: dict[int, tuple[str, list[int]]] = {}

    def hashes(self, text: str, prefix: str | None = None) -> list[int]:
        """Chained block hashes of ``text``; ``prefix`` (if ``text`` starts with it) is a speed hint."""
        if not prefix or not text.startswith(prefix):
            return text_block_hashes(text, self.block_tokens)
        memo = self._memo
        entry = memo.pop(id(prefix), None)
        if entry is None or entry[0] is not prefix:
            entry = (prefix, text_block_hashes(prefix, self.block_tokens))
        memo[id(prefix)] = entry  # (re)inserted last: most recently used
        head = entry[1]
        # continue the chain exactly as text_block_hashes builds it: hash((previous, block text))
        out = head.copy()
        step = self._step
        prev = head[-1] if head else 0
        for start in range(len(head) * step, len(text) - step + 1, step):
            prev = hash((prev, text[start:start + step]))
            out.append(prev)
        memo[id(text)] = (text, out)  # the next turn of a conversation names this prompt as its prefix
        while len(memo) > MEMO_SIZE:
            del memo[next(iter(memo))]
        return out


__all__ = ["MEMO_SIZE", "BlockHasher"]
