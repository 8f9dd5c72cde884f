"""Requests whose prompt is a chain of block ids (Mooncake's traces), and their text when one is needed.

A Mooncake trace gives each prompt as ``hash_ids``: one id per ``block_tokens``-token block
(512 in the FAST'25 release), equal ids meaning the same reusable prefix block. The simulator
works on those ids directly (``BlockRequest``): the prefix cache, the engine's cost of uncached
tokens and the policies that match prefixes (the ``prompt_blocks`` routing fact) get
``chain_blocks(ids)``, never a 50 KB prompt string. Text is built only when something needs
it (a policy that reads only ``prompt_text``, or ``fdrouter replay`` sending the trace to a
live router): ``block_prompt`` makes it deterministically from the ids, so equal ids give
equal text and a live prefix cache that hashes text blocks sees the same reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from .kvcache import CHARS_PER_TOKEN
from .workloads import synthetic_prompt

__all__ = ["DEFAULT_TRACE_BLOCK_TOKENS", "BlockRequest", "block_prompt", "chain_blocks"]

DEFAULT_TRACE_BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in the Mooncake FAST'25 traces (the release's README and appendix)."""

_BODY = synthetic_prompt(1 << 16, "block filler")  # 256 KiB of fixed words, the same in every process
_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: spreads consecutive ids over the filler


def chain_blocks(ids: Sequence[int]) -> tuple[int, ...]:
    """Chained hashes of block ids: the k-th stands for blocks 0..k, so two chains share a leading
    element only where their whole prefixes are equal (as an engine's block hashes are).

    Deterministic across processes (hashes of ints are not salted).
    """
    out = []
    prev = 0
    for block in ids:
        prev = hash((prev, block))
        out.append(prev)
    return tuple(out)


def _block_text(block: int, chars: int) -> str:
    head = f"[block {block}] "
    body = chars - len(head)
    if body <= 0:
        return head[:chars]
    start = (block * _MULTIPLIER) % (len(_BODY) - body) if body < len(_BODY) else 0
    return head + (_BODY[start:start + body] if body < len(_BODY) else (_BODY * (body // len(_BODY) + 1))[:body])


def block_prompt(ids: Sequence[int], tokens: int, block_tokens: int, tail: str = "") -> str:
    """Prompt text of ``tokens`` estimated tokens (4 characters each) for a chain of block ids.

    Each block's text depends on its id alone and starts with it, so prompts with equal leading
    ids share exactly those leading blocks of text. Tokens beyond the ids' blocks (a trace that
    hashes full blocks only) get text starting with ``tail``, which should be unique to the request.
    """
    step = block_tokens * CHARS_PER_TOKEN
    chars = max(1, tokens) * CHARS_PER_TOKEN
    text = "".join([_block_text(block, step) for block in ids])
    if len(text) < chars:
        text += synthetic_prompt((chars - len(text)) // CHARS_PER_TOKEN + 1, tail or "tail")
    return text[:chars]


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """One request of a block-id trace: lengths and block ids, text only on demand.

    Quacks like ``workloads.Request`` (``id``, ``arrival``, ``output_tokens``, ``session``,
    ``prompt_tokens``, ``prompt``); the simulator reads ``blocks`` instead of hashing ``prompt``.
    """

    id: int
    arrival: float
    """Seconds of simulated time (the trace's ms timestamp, converted and scaled)."""
    prompt_tokens: int
    """The trace's ``input_length``: exact, not estimated."""
    output_tokens: int
    blocks: tuple[int, ...]
    """The trace's ``hash_ids``, in prompt order."""
    block_tokens: int = DEFAULT_TRACE_BLOCK_TOKENS
    session: str | None = None
    prefix: ClassVar[None] = None  # no text-hashing hint: the blocks are the hashes

    @property
    def prompt(self) -> str:
        """The prompt as text (``block_prompt``), built anew on every access: ~4 bytes per token."""
        return block_prompt(self.blocks, self.prompt_tokens, self.block_tokens, tail=f"request {self.id} tail")
