"""Bounded soak: 30 s of mixed load with client disconnects; the router process's fds, RSS and counters stay flat."""

from __future__ import annotations

import asyncio
import collections
import random
import re
import time

import aiohttp
import pytest

from .conftest import classify, open_fds, poll, rss_bytes

TOKENS = 16  # per answer (max_tokens); a dropped stream asks for all of the backend's 4000 (16 s)
BACKEND_TOKENS = 4000  # so a dropped stream is surely still running when its client hangs up
CONCURRENCY = 32
WARMUP_SECS = 5.0
LOAD_SECS = 25.0
FD_SLACK = 10
RSS_SLACK = 20 * 1024 * 1024


async def _load(url: str, seconds: float, seed: int, samples: list | None = None, pid: int = 0) -> collections.Counter:
    """``CONCURRENCY`` clients for ``seconds``: 45% streams, 45% plain, 10% streams dropped after a chunk."""
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2),
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def client() -> None:
            while time.monotonic() < deadline:
                roll = rng.random()
                stream, drop = roll < 0.45 or roll >= 0.9, roll >= 0.9
                chat = rng.random() < 0.5
                path = "/v1/chat/completions" if chat else "/v1/completions"
                body = ({"messages": [{"role": "user", "content": f"soak {rng.random()}"}]} if chat
                        else {"prompt": f"soak {rng.random()}"})
                body["stream"] = stream
                if not drop:
                    body["max_tokens"] = TOKENS
                try:
                    async with http.post(url + path, json=body) as resp:
                        if drop:
                            await resp.content.readuntil(b"\n\n")  # one event, then hang up mid-stream
                            resp.close()
                            outcomes["dropped mid-stream"] += 1
                            continue
                        outcomes[classify(resp.status, await resp.read(), stream=stream, tokens=TOKENS)] += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    outcomes[f"bad:{type(exc).__name__}"] += 1

        async def sampler() -> None:
            while samples is not None and time.monotonic() < deadline:
                await asyncio.sleep(2.0)
                samples.append((open_fds(pid), rss_bytes(pid)))

        await asyncio.gather(sampler(), *(client() for _ in range(CONCURRENCY)))
    return outcomes


async def _settled_fds(pid: int, at_most: int | None) -> int:
    """The process's fd count once hung-up client connections and cut upstreams have finished closing.

    Waits (bounded, 10 s) for the count to be ``at_most`` or less; without a bound (a reference
    reading) for it to stop falling over half a second. Not a fixed sleep: on a loaded machine
    closing can take longer, and a reading taken too early would fail the test or loosen it.
    """
    previous = None

    async def done() -> bool:
        nonlocal previous
        fds = open_fds(pid)
        if at_most is not None:
            return fds <= at_most
        stable, previous = fds == previous, fds
        return stable

    await poll(done, timeout=10, interval=0.1 if at_most is not None else 0.5)
    return open_fds(pid)


def _gauges(text: str, name: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


@pytest.mark.once
async def test_thirty_seconds_of_load_with_disconnects_leave_fds_memory_and_counters_where_they_were(spawn):
    backends = [await spawn.backend("--output-tokens", str(BACKEND_TOKENS), "--token-delay", "0.004")
                for _ in range(2)]
    router = await spawn.router("--worker-urls", *(b.url for b in backends), "--max-concurrent-requests", "64",
                                "--health-check-interval-secs", "1")
    pid = router.pid

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def state() -> tuple[list[dict], str]:
            async with http.get(router.url + "/registered") as resp:
                instances = (await resp.json())["instances"]
            async with http.get(router.url + "/metrics") as resp:
                return instances, await resp.text()

        async def idle() -> bool:
            instances, metrics = await state()
            return (all(i["in_flight_requests"] == 0 and i["in_flight_tokens"] == 0 for i in instances)
                    and _gauges(metrics, "fdrouter_admission_active") == [0.0]
                    and _gauges(metrics, "fdrouter_admission_queued") == [0.0])

        async def settled(fds_at_most: int | None = None) -> tuple[int, int]:
            assert await poll(idle, timeout=10, interval=0.2), f"router not idle after load: {await state()}"
            return await _settled_fds(pid, fds_at_most), rss_bytes(pid)

        fds_start, rss_start = open_fds(pid), rss_bytes(pid)
        warm = await _load(router.url, WARMUP_SECS, seed=1)
        fds_warm, rss_warm = await settled()
        samples: list[tuple[int, int]] = []
        main = await _load(router.url, LOAD_SECS, seed=2, samples=samples, pid=pid)
        fds_end, rss_end = await settled(fds_at_most=fds_warm + FD_SLACK)
        instances, metrics = await state()

    outcomes = warm + main
    mb = 1024 * 1024
    peak_fds = max(f for f, _ in samples)
    peak_rss = max(r for _, r in samples)
    disconnect_499 = sum(_gauges(metrics, r'fdrouter_requests_total\{[^}]*status="499"[^}]*\}'))
    print(f"\nsoak: {sum(outcomes.values())} requests in {WARMUP_SECS + LOAD_SECS:g}s at concurrency {CONCURRENCY}: "
          f"{dict(outcomes)}; router counted {disconnect_499:g} as 499\n"
          f"  fds: start {fds_start}, after warm-up {fds_warm}, peak under load {peak_fds}, after load {fds_end}\n"
          f"  RSS MB: start {rss_start / mb:.1f}, after warm-up {rss_warm / mb:.1f}, peak {peak_rss / mb:.1f}, "
          f"after load {rss_end / mb:.1f} (growth after warm-up {(rss_end - rss_warm) / mb:+.1f})\n"
          f"  in flight after load: {[i['in_flight_requests'] for i in instances]} (/registered), "
          f"{_gauges(metrics, 'fdrouter_instance_in_flight_requests')} (/metrics)")

    assert not [k for k in outcomes if k.startswith(("bad", "error"))], outcomes
    assert outcomes["dropped mid-stream"] >= 50
    assert disconnect_499 == outcomes["dropped mid-stream"], "the router missed client disconnects"
    assert fds_end <= fds_warm + FD_SLACK, f"fds grew from {fds_warm} to {fds_end}"
    assert peak_fds <= fds_warm + 2 * CONCURRENCY + FD_SLACK, f"fds peaked at {peak_fds}"
    assert rss_end - rss_warm < RSS_SLACK, f"RSS grew by {(rss_end - rss_warm) / mb:.1f} MB after warm-up"
    assert _gauges(metrics, "fdrouter_instance_in_flight_requests") == [0.0, 0.0]
    assert all(i["health"] == "healthy" and i["circuit"] == "closed" for i in instances), instances
