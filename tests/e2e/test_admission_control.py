"""Admission control on the live router: a bounded queue, then 429 with Retry-After."""

from __future__ import annotations

import asyncio

from fdrouter.server import ADMISSION_KEY

from ..conftest import wait_until


async def test_beyond_concurrency_and_queue_the_router_answers_429_with_retry_after(cluster):
    c = await cluster(mixed=1, max_concurrent_requests=2, queue_size=1, queue_timeout_secs=10,
                      behavior={"output_tokens": 2})
    backend = c.backends[0]
    backend.behavior.gate = asyncio.Event()  # each request holds its slot until the gate opens
    admission = c.server.app[ADMISSION_KEY]
    slow = [asyncio.create_task(c.chat()) for _ in range(3)]  # 2 run, 1 queues
    assert await wait_until(lambda: backend.requests_in_flight == 2 and admission.queued == 1)
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        body = await resp.json()
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "queue" in body["error"]["message"]
    backend.behavior.gate.set()
    results = await asyncio.gather(*slow)
    assert [status for status, _ in results] == [200, 200, 200]  # the queued one was served, not lost


async def test_queue_timeout_answers_429_saying_how_long_it_waited(cluster):
    c = await cluster(mixed=1, max_concurrent_requests=1, queue_size=4, queue_timeout_secs=0.2,
                      behavior={"output_tokens": 2})
    backend = c.backends[0]
    backend.behavior.gate = asyncio.Event()  # the first request keeps the only slot until the gate opens
    first = asyncio.create_task(c.chat())
    assert await wait_until(lambda: backend.requests_in_flight == 1)
    status, body = await c.chat()
    assert status == 429
    assert "0.2" in body["error"]["message"]
    backend.behavior.gate.set()
    assert (await first)[0] == 200


async def test_admission_is_off_by_default(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 1, "token_delay": 0.05})
    results = await asyncio.gather(*(c.chat() for _ in range(40)))
    assert all(status == 200 for status, _ in results)
