"""The Mooncake FAST'25 trace format: one checked line -> one block-id entry.

Format (kvcache-ai/Mooncake, ``FAST25-release/traces``; the paper's appendix), one JSON
object per line::

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 2353, 2354]}

- ``timestamp``: milliseconds since the start of the trace (number >= 0);
- ``input_length``: prompt tokens (integer >= 1); ``output_length``: generated tokens
  (integer >= 0; 0 is generated as 1, as an engine always emits one token);
- ``hash_ids``: one integer per ``block_tokens``-token block of the prompt (512 in the
  release), in order; equal ids are the same reusable prefix block. A partial last block has
  an id too: ``len(hash_ids) == ceil(input_length / block_tokens)`` (a trace that hashes only
  full blocks, ``floor``, is accepted as well; its tail is never cached).
- ``session_id`` (string, optional; as NVIDIA aiperf writes the format): the session key.

Other keys are ignored. ``trace.load_trace`` detects the format per file and names the line
of any problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeGuard

__all__ = ["MOONCAKE_KEYS", "BlockEntry", "is_mooncake", "mooncake_entry"]

MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One checked line of a block-id trace; times in seconds, already scaled."""

    arrival: float
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...]
    session: str | None


def is_mooncake(obj: object) -> bool:
    """Whether a trace's first object is in Mooncake's format rather than fdrouter's."""
    return isinstance(obj, dict) and "arrival" not in obj and any(k in obj for k in MOONCAKE_KEYS)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def mooncake_entry(obj: object, block_tokens: int, time_scale: float) -> BlockEntry:
    """Check one line's object; ``ValueError`` says what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    stamp = obj.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not 0 <= stamp < math.inf:
        raise ValueError(f"'timestamp' must be a number of milliseconds >= 0, got {stamp!r}")
    tokens = obj.get("input_length")
    if not _is_int(tokens) or tokens < 1:
        raise ValueError(f"'input_length' must be an integer >= 1, got {tokens!r}")
    output = obj.get("output_length")
    if not _is_int(output) or output < 0:
        raise ValueError(f"'output_length' must be an integer >= 0, got {output!r}")
    ids = obj.get("hash_ids")
    if not isinstance(ids, list) or not all(_is_int(i) for i in ids):
        raise ValueError(f"'hash_ids' must be a list of integers, got {_short(ids)}")
    full, partial = divmod(tokens, block_tokens)
    if len(ids) != full + (partial > 0) and len(ids) != full:
        raise ValueError(
            f"{len(ids)} hash_ids for {tokens} input tokens: with {block_tokens}-token blocks expected "
            f"{full + (partial > 0)} (is the block size right? see --block-tokens)"
        )
    session = obj.get("session_id")
    if session is not None and not isinstance(session, str):
        raise ValueError(f"'session_id' must be a string, got {type(session).__name__}")
    return BlockEntry(stamp / 1000.0 * time_scale, tokens, max(1, output), tuple(ids), session)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
