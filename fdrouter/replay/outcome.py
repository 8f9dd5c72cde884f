"""What one replayed request came to, what a streamed answer says, and the summary of a run. Sans-IO.

``StreamState`` reads an OpenAI-style SSE answer line by line (the clock reading of each line
comes from the caller) and keeps what the summary needs: when the first token came, the
final ``usage`` (with ``prompt_tokens_details.cached_tokens``), an error event. ``summarize``
turns the outcomes into the simulator's headline numbers where they exist (``ttft_p50``,
``e2e_p99``, ``cache_hit_rate``, ...) plus what only a live run has (errors, how late the
client sent).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "StreamState", "percentile", "summarize"]


@dataclass
class Outcome:
    """One request of a replay. Times in seconds of wall clock; None where it never happened."""

    request_id: int
    scheduled: float
    """When it was due, from the start of the replay (its arrival after the first one's, divided by the speedup)."""
    late: float = 0.0
    """How much later than ``scheduled`` it was sent (client-side queueing, scheduling noise)."""
    ttft: float | None = None
    """From sending to the first token chunk."""
    e2e: float | None = None
    """From sending to the end of the answer."""
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    """None for success; else a kind: ``http_<status>``, ``timeout``, ``connection``, ``stream_error``,
    ``no_answer`` (the stream ended without a token), ``cancelled`` (the replay was stopped)."""


def _first_text(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    delta = choice.get("delta")
    text = choice.get("text") if "text" in choice else (delta.get("content") if isinstance(delta, dict) else None)
    return bool(text)


class StreamState:
    """Feed it the lines of one streamed answer, with the time each arrived."""

    __slots__ = ("first_token_at", "usage", "error", "done")

    def __init__(self) -> None:
        self.first_token_at: float | None = None
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self.done = False

    def feed(self, line: bytes, now: float) -> None:
        """One line of the SSE body (``data: ...``; others are ignored)."""
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            self.error = "stream_error"
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self.error = "stream_error"
            return
        if self.first_token_at is None and _first_text(chunk):
            self.first_token_at = now
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage

    def apply(self, outcome: Outcome, sent: float, ended: float) -> None:
        """Write what the stream said into ``outcome`` (sent and ended: the clock at both ends)."""
        usage = self.usage or {}
        details = usage.get("prompt_tokens_details")
        outcome.prompt_tokens = _int(usage.get("prompt_tokens"))
        outcome.completion_tokens = _int(usage.get("completion_tokens"))
        outcome.cached_tokens = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
        outcome.e2e = ended - sent
        if self.first_token_at is not None:
            outcome.ttft = self.first_token_at - sent
        if self.error is not None:
            outcome.error = self.error
        elif self.first_token_at is None:
            outcome.error = "no_answer"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(outcomes: Sequence[Outcome], wall_s: float) -> dict[str, Any]:
    """Headline numbers of a replay, named as the simulator names them where both have them."""
    ok = [o for o in outcomes if o.error is None]
    ttft = [o.ttft for o in ok if o.ttft is not None]
    e2e = [o.e2e for o in ok if o.e2e is not None]
    tpot = [(o.e2e - o.ttft) / (o.completion_tokens - 1) for o in ok
            if o.e2e is not None and o.ttft is not None and o.completion_tokens is not None and o.completion_tokens > 1]
    with_usage = [o for o in ok if o.prompt_tokens and o.cached_tokens is not None]
    prompt = sum(o.prompt_tokens or 0 for o in with_usage)
    cached = sum(o.cached_tokens or 0 for o in with_usage)
    kinds = Counter(o.error for o in outcomes if o.error is not None)
    return {
        "requests": len(outcomes),
        "completed": len(ok),
        "errors": sum(kinds.values()),
        "error_kinds": dict(sorted(kinds.items())),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p99": percentile(ttft, 99),
        "e2e_p50": percentile(e2e, 50),
        "e2e_p99": percentile(e2e, 99),
        "tpot_p50": percentile(tpot, 50),
        "throughput_rps": len(ok) / wall_s if wall_s > 0 else math.nan,
        "cache_hit_rate": cached / prompt if prompt else math.nan,
        "late_p99": percentile([o.late for o in outcomes if o.error != "cancelled"], 99),
        "makespan_s": wall_s,
    }
