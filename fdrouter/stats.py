"""The periodic stats line (``--stats-interval-secs``, FastDeploy's Go router ``scheduler.stats-interval-secs``).

In the spirit of the Go router's ``[stats] total_running=14, workers: [http://a:9867: running=0,
...], cache_hit_rate=...``, every interval one log line gives the requests running on each
instance and the prefix-cache hit rate the instances reported in their answers during the
interval: ``usage.prompt_tokens_details.cached_tokens`` over ``usage.prompt_tokens``, from
non-streamed bodies and from a stream's usage chunk when the client asked for one
(``stream_options.include_usage``). The Go router's rate counts its own session-stickiness
hits instead; fdrouter reports what the engines say they found in their caches.

Cost: nothing when the interval is 0 (no tap is made). When on, ``UsageTap`` wraps the answer
the client gets: a stream's chunks are searched for ``"usage"`` (a ``bytes`` search) and only
the last chunk naming it is kept; usage is decoded once per answer, from its ``{...}`` alone
(usage is the last member of an OpenAI answer), never the whole body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing

from . import jsonutil
from .generation_pool import Response
from .periodic import Periodic

log = logging.getLogger(__name__)

_USAGE = b'"usage"'
_TAIL_LIMIT = 64 * 1024  # usage is ~200 bytes: what follows its start is kept up to this much


def usage_of(data: bytes) -> dict | None:
    """The last ``"usage": {...}`` object in ``data`` (an answer body or SSE chunk), decoded; else None."""
    at = data.rfind(_USAGE)
    if at < 0:
        return None
    start = data.find(b"{", at + len(_USAGE))
    if start < 0 or data[at + len(_USAGE):start].strip(b" \t\r\n:"):
        return None  # "usage": null, or not a member
    depth = 0
    i = start
    size = len(data)
    while i < size:  # usage holds numbers and objects only: no string can hide a brace
        byte = data[i]
        if byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                try:
                    usage = jsonutil.loads(data[start:i + 1])
                except ValueError:
                    return None
                return usage if isinstance(usage, dict) else None
        i += 1
    return None


class CacheStats:
    """Prompt and cached tokens reported in answers since the last ``take``."""

    __slots__ = ("prompt_tokens", "cached_tokens", "answers")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.answers = 0

    def observe(self, usage: dict | None) -> None:
        """Count one answer's usage (ignored unless it has a numeric ``prompt_tokens``)."""
        if usage is None:
            return
        prompt = usage.get("prompt_tokens")
        if isinstance(prompt, bool) or not isinstance(prompt, int):
            return
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        self.prompt_tokens += prompt
        if isinstance(cached, int) and not isinstance(cached, bool):
            self.cached_tokens += cached
        self.answers += 1

    def take(self) -> tuple[int, int, int]:
        """(prompt tokens, cached tokens, answers) since the last take, and start counting anew."""
        out = (self.prompt_tokens, self.cached_tokens, self.answers)
        self.prompt_tokens = self.cached_tokens = self.answers = 0
        return out


class UsageTap:
    """An upstream ``Response`` that counts the usage of what passes through it (same interface)."""

    __slots__ = ("_resp", "_stats", "status")

    def __init__(self, resp: Response, stats: CacheStats) -> None:
        self._resp = resp
        self._stats = stats
        self.status = resp.status

    def header(self, name: str, default: str = "") -> str:
        """As ``Response.header``."""
        return self._resp.header(name, default)

    def header_items(self) -> list[tuple[str, str]]:
        """As ``Response.header_items``."""
        return self._resp.header_items()

    @property
    def content_type(self) -> str:
        """As ``Response.content_type``."""
        return self._resp.content_type

    async def read(self) -> bytes:
        """The whole body; its usage is counted."""
        body = await self._resp.read()
        self._stats.observe(usage_of(body))
        return body

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The chunks, unchanged; the usage in the last one naming it is counted at the end (with
        what follows it, bounded: a body's usage may be cut between two chunks)."""
        last = None
        try:
            async with aclosing(self._resp.iter_chunks()) as chunks:
                async for chunk in chunks:
                    if _USAGE in chunk:
                        last = chunk
                    elif last is not None and len(last) < _TAIL_LIMIT:
                        last += chunk
                    yield chunk
        finally:
            if last is not None:
                self._stats.observe(usage_of(last))


def stats_line(running: Iterable[tuple[str, int]], prompt_tokens: int, cached_tokens: int, answers: int) -> str:
    """The Go router's stats line, with the hit rate of the tokens the answers reported."""
    rows = list(running)
    workers = ", ".join(f"{url}: running={n}" for url, n in rows)
    rate = 100.0 * cached_tokens / prompt_tokens if prompt_tokens else 0.0
    return (f"[stats] total_running={sum(n for _, n in rows)}, workers: [{workers}], "
            f"cache_hit_rate={rate:.2f}% (cached_tokens={cached_tokens}/prompt_tokens={prompt_tokens} "
            f"in {answers} answers)")


class StatsLog(Periodic):
    """Logs ``stats_line`` every interval (at INFO, logger ``fdrouter.stats``)."""

    task_name = "fdrouter-stats"

    def __init__(self, stats: CacheStats, running: Callable[[], Iterable[tuple[str, int]]], *,
                 interval: float) -> None:
        super().__init__(interval=interval, immediate=False)
        self._stats = stats
        self._running = running

    async def run_round(self) -> None:
        """Log one line."""
        log.info(stats_line(self._running(), *self._stats.take()))
        self.rounds += 1


__all__ = ["CacheStats", "StatsLog", "UsageTap", "stats_line", "usage_of"]
