"""The memory scenario: thousands of concurrent slow streams through a router, and its RSS per stream.

A mock backend of its own answers every request with 16 tokens, one a second (a 16 s stream);
``--streams`` of them (8,000 by default) are opened through ``fdrouter serve --workers 1`` and,
when installed, vllm-router, one target after the other, each started fresh for it. Measured:
how many streams completed (status 200 and a stream ending in ``[DONE]``), the most that were
open at once, and the router's RSS (VmRSS summed over its process tree, sampled every
``RSS_INTERVAL``) at its peak minus the same sum just before the first stream, over the streams.

The generator is Python (aiohttp on uvloop, in the benchmark's own process): at one event per
stream per second it is far from saturated, unlike the throughput scenarios. It opens the
streams in batches of ``BATCH`` and waits (bounded) until every request of a batch is written
(its connection accepted) before the next, so the ramp never overflows a listen backlog (vllm-router listens with 128) and ends
well before the first stream does. Everything is bounded: each stream by ``stream_timeout``,
each batch by ``BATCH_TIMEOUT``.

Every process needs one fd per stream and a router two: ``raise_nofile`` lifts the soft
RLIMIT_NOFILE to the hard limit before anything starts, and the children inherit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp

from fdrouter.testing.processes import Spawner

from .proctree import tree_rss_kb
from .targets import PEER_START_TIMEOUT, VLLM, start_vllm, wait_serving
from .workload import ENDPOINT, HEADERS, request_body

STREAM_TOKENS = 16
TOKEN_DELAY = 1.0  # seconds per token: a 16 s stream
BATCH = 100  # streams opened at once: below every listen backlog here (vllm-router listens with 128)
BATCH_TIMEOUT = 10.0  # the most one batch may wait for its requests to be written before the next batch starts
RSS_INTERVAL = 0.25  # seconds between RSS samples
STREAM_MARGIN = 60.0  # seconds a stream may run past its 16 s (plus the ramp) before it counts as failed
_DONE = b"data: [DONE]\n\n"
STREAMS_FDROUTER = "fdrouter --workers 1"


@dataclass
class StreamsResult:
    """What one target did with ``streams`` concurrent slow streams."""

    target: str
    streams: int
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    peak_open: int = 0
    """The most streams open at the same time (answer headers received, [DONE] not yet)."""
    ramp_seconds: float = 0.0
    seconds: float = 0.0
    idle_rss_kb: int | None = None
    peak_rss_kb: int | None = None
    note: str = ""

    @property
    def rss_per_stream_kb(self) -> float | None:
        """(peak RSS - idle RSS) / streams, in KiB (the 1,024-byte KB the targets use); None unmeasured."""
        if self.idle_rss_kb is None or self.peak_rss_kb is None or not self.streams:
            return None
        return (self.peak_rss_kb - self.idle_rss_kb) / self.streams

    def summary(self) -> dict:
        """The JSON-friendly numbers."""
        per = self.rss_per_stream_kb
        return {"target": self.target, "streams": self.streams, "completed": self.completed,
                "failures": dict(self.failures), "peak_open": self.peak_open,
                "ramp_seconds": round(self.ramp_seconds, 2), "seconds": round(self.seconds, 2),
                "idle_rss_kb": self.idle_rss_kb, "peak_rss_kb": self.peak_rss_kb,
                "rss_per_stream_kb": None if per is None else round(per, 2), "note": self.note}

    def line(self) -> str:
        """One line for the report."""
        if self.note and not self.completed:
            return f"  {self.target}: {self.note}"
        per, idle, peak = self.rss_per_stream_kb, self.idle_rss_kb, self.peak_rss_kb
        rss = ("RSS -" if per is None or idle is None or peak is None else
               f"RSS idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB = {per:.1f} KB/stream")
        if per is not None and 0 < self.peak_open < self.streams:
            # not all were open at once: the peak held fewer streams than the division assumes
            rss += f" ({per * self.streams / self.peak_open:.1f} KB per stream open at once)"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"  {self.target}: {self.completed}/{self.streams} completed (failed: {fails}), "
                f"{self.peak_open} open at once after a {self.ramp_seconds:.1f}s ramp, {self.seconds:.1f}s; {rss}")


def raise_nofile() -> tuple[int, int]:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def batches(total: int, size: int) -> list[int]:
    """``total`` split into batch sizes of at most ``size``."""
    size = max(1, size)
    return [min(size, total - start) for start in range(0, max(0, total), size)]


class _Counts:
    def __init__(self) -> None:
        self.open = 0
        self.peak = 0

    def opened(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)


async def _stream(session: aiohttp.ClientSession, url: str, body: bytes, timeout: float, counts: _Counts,
                  sent: asyncio.Event, result: StreamsResult) -> None:
    is_open = False
    try:
        async with (asyncio.timeout(timeout),
                    session.post(url, data=body, headers=HEADERS, trace_request_ctx=sent) as resp):
            counts.opened()
            is_open = True
            tail = b""
            async for chunk in resp.content.iter_any():
                tail = (tail + chunk)[-len(_DONE):]
            if resp.status != 200:
                result.failures[f"HTTP {resp.status}"] += 1
            elif tail != _DONE:
                result.failures["cut"] += 1
            else:
                result.completed += 1
    except TimeoutError:
        result.failures["timeout"] += 1
    except (aiohttp.ClientError, OSError) as exc:
        result.failures[exc.__class__.__name__] += 1
    finally:
        sent.set()  # a failed stream must not hold its batch back
        if is_open:
            counts.open -= 1


async def _request_sent(_session: object, ctx: SimpleNamespace, _params: object) -> None:
    ctx.trace_request_ctx.set()  # the stream's event: its connection is accepted and its request written


async def _sample_rss(pid: int, result: StreamsResult, stop: asyncio.Event) -> None:
    while not stop.is_set():
        rss = tree_rss_kb(pid)
        if rss is not None:
            result.peak_rss_kb = max(result.peak_rss_kb or 0, rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_INTERVAL)


async def run_streams(url: str, pid: int, target: str, streams: int, *, batch: int = BATCH,
                      prompt_chars: int = 1000, say: Callable[[str], None] = print) -> StreamsResult:
    """Open ``streams`` slow streams to ``url`` in batches, wait for all of them; RSS of ``pid``'s tree."""
    result = StreamsResult(target, streams)
    body = request_body(stream=True, prompt_chars=prompt_chars)
    sizes = batches(streams, batch)
    timeout = STREAM_TOKENS * TOKEN_DELAY + len(sizes) * BATCH_TIMEOUT + STREAM_MARGIN
    counts, stop = _Counts(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=True)
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_request_sent)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, trace_configs=[trace],
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        result.idle_rss_kb = tree_rss_kb(pid)
        sampler = asyncio.create_task(_sample_rss(pid, result, stop))
        start = time.monotonic()
        tasks: list[asyncio.Task] = []
        try:
            for size in sizes:
                events = [asyncio.Event() for _ in range(size)]
                tasks += [asyncio.create_task(_stream(session, url, body, timeout, counts, ev, result))
                          for ev in events]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BATCH_TIMEOUT):
                        for ev in events:
                            await ev.wait()
            result.ramp_seconds = time.monotonic() - start
            say(f"  {target}: {len(tasks)} streams opened in {result.ramp_seconds:.1f}s, {counts.open} open now")
            await asyncio.gather(*tasks)  # each bounded by its own timeout
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stop.set()
            await sampler
    result.seconds = time.monotonic() - start
    result.peak_open = counts.peak
    return result




async def memory_phase(spawner: Spawner, *, streams: int, peers: tuple[str, ...], prompt_chars: int,
                       say: Callable[[str], None]) -> list[StreamsResult]:
    """Start the slow mock, then per target: start it, run the streams, stop it. Peers that fail cost their line."""
    py = sys.executable
    mock = await spawner.start("streams-mock", [
        py, "-m", "fdrouter.testing.mock_backend", "--port", "0", "--role", "mixed",
        "--output-tokens", str(STREAM_TOKENS), "--token-delay", str(TOKEN_DELAY),
    ], own_session=True)
    # --max-connections: the generation pool's default cap (4,096) would queue half of 8,000 streams
    starters = {STREAMS_FDROUTER: lambda: spawner.start(STREAMS_FDROUTER, [
        py, "-m", "fdrouter", "serve", "--port", "0", "--worker-urls", mock.url, "--log-level", "warning",
        "--workers", "1", "--max-connections", str(max(4096, 2 * streams))], own_session=True)}
    if VLLM in peers:
        starters[VLLM] = lambda: start_vllm(spawner, mock.url, name=f"{VLLM} (streams)")
    results = []
    # max_tokens 1: a one-token answer (1 s) instead of 16 s; fdrouter refuses 0
    probe = json.dumps({**json.loads(request_body(stream=False, prompt_chars=prompt_chars)), "max_tokens": 1}).encode()
    async with aiohttp.ClientSession() as session:
        for name, start in starters.items():
            try:
                proc = await start()
                url = proc.url.rstrip("/") + ENDPOINT
                await wait_serving(session, name, url, probe, PEER_START_TIMEOUT, each=5 * TOKEN_DELAY)
            except RuntimeError as exc:  # costs this target's line, not the run
                say(f"{name}: could not be started for the memory scenario: {exc}")
                results.append(StreamsResult(name, streams, note=f"could not be started ({exc})"[:200]))
                continue
            say(f"memory: {streams} streams of {STREAM_TOKENS * TOKEN_DELAY:g}s through {name} ...")
            try:
                results.append(await run_streams(url, proc.pid, name, streams, prompt_chars=prompt_chars, say=say))
            finally:
                await asyncio.to_thread(proc.stop)  # frees its fds and memory before the next target
            say(results[-1].line().strip())
    await asyncio.to_thread(mock.stop)
    return results


__all__ = ["BATCH", "BATCH_TIMEOUT", "RSS_INTERVAL", "STREAMS_FDROUTER", "STREAM_TOKENS", "StreamsResult",
           "TOKEN_DELAY", "batches", "memory_phase", "raise_nofile", "run_streams"]
