"""Seeded Mooncake-format traces with chosen statistics, for benchmarks at production scale.

The FAST'25 release's conversation trace has 12,031 requests with prompts of 12,035 tokens
and answers of 343 tokens on average and a prefix-cache ratio of about 40% (the paper's
Table 2); ``conversation_like()`` writes a trace with those statistics (the numbers are its
defaults) without shipping the original:

- arrivals are Poisson over ``duration_s`` (an hour by default: the release spans about one);
- every prompt starts with one block shared by all (an application system prompt, as block
  0 of the release's conversation trace);
- a request continues an earlier conversation with probability ``continue_share``: it keeps
  that conversation's full blocks (the previous turn's prompt) and adds new ones for the
  previous answer and a new question; otherwise it starts a new conversation of a
  lognormally distributed length (median about half the mean, as long-tailed chat prompts are);
- a partial last block gets an id of its own, never reused (the next turn fills that block
  with other tokens, so its hash changes), as in the release.

Deterministic for a seed; ``write_trace`` writes one JSON object per line.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .block_requests import DEFAULT_TRACE_BLOCK_TOKENS

__all__ = ["conversation_like", "write_trace"]

_MAX_TOKENS = 131_072  # the longest prompts of the release are about this long (128k context)


def conversation_like(
    *, requests: int = 12_031, seed: int = 0, new_mean_input: float = 11_300, mean_output: float = 343,
    duration_s: float = 3600.0, continue_share: float = 0.39, window: int = 2000,
    block_tokens: int = DEFAULT_TRACE_BLOCK_TOKENS,
) -> Iterator[dict[str, Any]]:
    """Mooncake-format records (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``).

    ``new_mean_input``: mean prompt tokens of a new conversation (continuations are longer);
    ``window``: a continuation picks one of the last ``window`` conversations, so reuse stays
    recent. The defaults were tuned to the conversation trace's statistics: with seed 0 the
    prompts average ~12.0k tokens (~24 blocks) and the prefix-cache ratio is ~40%.
    """
    if requests < 0 or not duration_s > 0 or not new_mean_input >= 1 or not mean_output >= 1:
        raise ValueError("requests >= 0, duration_s > 0, new_mean_input >= 1 and mean_output >= 1 are required")
    mean_input = new_mean_input
    rng = random.Random(seed)
    sigma = 1.1  # lognormal shape: median = mean / e^(sigma^2/2) ~ 0.55 x mean
    mu_in = math.log(mean_input) - sigma * sigma / 2
    next_id = 1  # 0 is the shared system block
    conversations: list[tuple[list[int], int, int]] = []  # (full blocks, tokens, last answer tokens)
    t = 0.0
    rate = requests / duration_s if requests else 1.0
    for _ in range(requests):
        t += rng.expovariate(rate)
        output = max(1, min(4096, round(rng.expovariate(1.0 / mean_output))))
        if conversations and rng.random() < continue_share:
            slot = len(conversations) - 1 - rng.randrange(min(window, len(conversations)))
            blocks, tokens, answer = conversations[slot]
            # the previous prompt, its answer and a new question of a tenth of the mean
            tokens = min(_MAX_TOKENS, tokens + answer + max(16, round(rng.expovariate(10.0 / mean_input))))
            keep = blocks
        else:
            tokens = max(16, min(_MAX_TOKENS, round(rng.lognormvariate(mu_in, sigma))))
            keep = [0]
            slot = -1
        full, partial = divmod(tokens, block_tokens)
        ids = keep[:full] + list(range(next_id, next_id + max(0, full - len(keep))))
        next_id += max(0, full - len(keep))
        if partial:
            ids.append(next_id)  # a partial block is never reused
            next_id += 1
        state = (ids[:full], tokens, output)
        if slot >= 0:
            conversations[slot] = state
        else:
            conversations.append(state)
        yield {"timestamp": round(t * 1000), "input_length": tokens, "output_length": output, "hash_ids": ids}


def write_trace(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write records as JSONL (one object per line); the number written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, separators=(", ", ": ")) + "\n")
            n += 1
    return n
