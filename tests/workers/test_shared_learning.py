"""What one worker's cache-aware policy learns, every worker knows; ids, keys and logs per worker."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from fdrouter.testing import MockBehavior

from .conftest import chat

pytestmark = pytest.mark.once

TENANTS = 6
ROUNDS = 8


def _prompt(tenant: int, turn: int) -> str:
    # a long shared system prompt per tenant (what a prefix cache keeps), a short question each time
    return f"tenant {tenant} system prompt: " + f"rule {tenant} of the house. " * 120 + f" question {turn}?"


async def _hit_rate(workers, mock_backend_factory, count: int) -> float:
    backends = [await mock_backend_factory(behavior=MockBehavior(token_delay=0.02)) for _ in range(4)]
    router = await workers(count, "--policy", "cache_aware", "--worker-urls", *(b.url for b in backends))
    # a new connection per request: requests land on whichever worker the kernel picks. The
    # tenants of a round go at once, so loads differ when each is placed: tenants spread over
    # the instances, and a worker that does not know where another placed a tenant misses.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        answers = []
        for turn in range(ROUNDS):
            answers += await asyncio.gather(*(chat(http, router.url, _prompt(tenant, turn), max_tokens=2)
                                              for tenant in range(TENANTS)))
    prompt = cached = 0
    for status, body in answers:
        assert status == 200, body
        prompt += body["usage"]["prompt_tokens"]
        cached += body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached / prompt


async def test_cache_aware_with_two_workers_hits_the_cache_nearly_as_well_as_with_one(workers, mock_backend_factory):
    one = await _hit_rate(workers, mock_backend_factory, 1)
    two = await _hit_rate(workers, mock_backend_factory, 2)
    assert one > 0.5  # the workload really is cacheable
    assert two >= 0.95 * one, (one, two)


async def test_request_ids_keys_and_worker_ids_in_logs_work_in_every_worker(workers, mock_backend_factory):
    backend = await mock_backend_factory()
    router = await workers(2, "--worker-urls", backend.url, "--api-key", "sesame", "--log-level", "info")
    for worker in (0, 1):
        async with router.on(worker) as session:
            async with session.post(router.url + "/v1/chat/completions",
                                    json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
                assert resp.status == 401  # the key is checked by every worker
            async with session.post(router.url + "/v1/chat/completions", headers={
                    "Authorization": "Bearer sesame", "X-Request-Id": f"req-from-test-{worker}"},
                    json={"messages": [{"role": "user", "content": "hi"}]}) as resp:
                assert resp.status == 200 and resp.headers["X-Request-Id"] == f"req-from-test-{worker}"
            async with session.post(router.url + "/v1/abort_requests", json={"abort_all": True}) as resp:
                assert resp.status == 200
    log = router.proc.log_text()
    assert "worker=0" in log and "worker=1" in log  # every line says which worker wrote it
