"""Chaos: a backend process is SIGKILLed in the middle of 2,000 requests; every request still ends cleanly."""

from __future__ import annotations

import asyncio
import collections
import random

import aiohttp
import pytest

from .conftest import classify, kill_now

TOKENS = 8
TOKEN_DELAY = 0.01  # 80 ms per answer: at concurrency 50 every backend always has requests in flight
TOTAL = 2000
CONCURRENCY = 50
KILL_AFTER = 600  # completed requests before the kill
CLIENT_TIMEOUT = 30.0


@pytest.mark.once
async def test_killing_a_backend_mid_run_ends_every_request_complete_or_with_a_clean_error(spawn, router_factory):
    backends = [await spawn.backend("--output-tokens", str(TOKENS), "--token-delay", str(TOKEN_DELAY))
                for _ in range(3)]
    server = await router_factory(
        health_check_interval_secs=0.5, health_check_timeout_secs=1.0,
        retry_initial_backoff_secs=0.001, retry_max_backoff_secs=0.01,
    )
    victim = backends[0]
    rng = random.Random(1234)
    kinds = [(rng.random() < 0.5, rng.random() < 0.5) for _ in range(TOTAL)]  # (stream, chat)
    outcomes: list[str | None] = [None] * TOTAL
    started_after_kill = [False] * TOTAL
    killed = asyncio.Event()
    kill_state: dict[str, int] = {}
    done = 0
    next_index = 0

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
    ) as http:
        for backend in backends:
            async with http.post(server.url + "/register", json={"role": "mixed", "host_ip": "127.0.0.1",
                                                                  "port": backend.port}) as resp:
                assert resp.status == 200, await resp.text()

        async def one(i: int) -> str:
            stream, chat = kinds[i]
            if chat:
                path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": f"q{i}"}]}
            else:
                path, body = "/v1/completions", {"prompt": f"q{i}"}
            body["stream"] = stream
            try:
                async with http.post(server.url + path, json=body) as resp:
                    return classify(resp.status, await resp.read(), stream=stream, tokens=TOKENS)
            except TimeoutError:
                return "bad:client timeout (hung)"
            except aiohttp.ClientError as exc:
                return f"bad:{type(exc).__name__}"

        async def worker() -> None:
            nonlocal done, next_index
            while next_index < TOTAL:
                i = next_index
                next_index += 1
                started_after_kill[i] = killed.is_set()
                outcomes[i] = await one(i)
                done += 1

        async def killer() -> None:
            while done < KILL_AFTER:
                await asyncio.sleep(0.005)
            state = next(s for s in server.router.registry.all() if s.url.endswith(f":{victim.port}"))
            for _ in range(400):  # the victim has work in flight nearly always; bounded wait anyway
                if state.in_flight >= 3:
                    break
                await asyncio.sleep(0.005)
            # read and kill in one step of the loop: no request can be dispatched in between
            kill_state["in_flight"] = state.in_flight
            kill_state["done"] = done
            kill_now(victim)
            killed.set()

        await asyncio.gather(killer(), *(worker() for _ in range(CONCURRENCY)))

    counts = collections.Counter(outcomes)
    print(f"\nchaos: {TOTAL} requests, concurrency {CONCURRENCY}, backend killed after {kill_state['done']} "
          f"with {kill_state['in_flight']} request(s) in flight on it; outcomes: {dict(counts)}")
    assert await victim.wait(5) == -9
    bad = {k: n for k, n in counts.items() if k is None or k.startswith("bad")}
    assert not bad, f"requests that hung or were cut without an error: {bad}"
    assert kill_state["in_flight"] >= 1, "the kill did not hit any request in flight"
    errors = sum(n for k, n in counts.items() if k.startswith("error"))
    # only requests already streaming from the victim may fail; the rest are retried before the first byte
    assert errors <= kill_state["in_flight"], counts
    assert all(k == "error:stream:upstream_error" for k in counts if k.startswith("error")), counts
    after = [o for o, later in zip(outcomes, started_after_kill, strict=True) if later]
    assert len(after) >= 1000 and all(o == "ok" for o in after), collections.Counter(after)
    assert all(o == "ok" for o in outcomes[-200:])
