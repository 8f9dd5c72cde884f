"""Mixed mode end to end: one pooled session, streaming relay, release on every path."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from fdrouter.testing import MockBehavior

from ..conftest import wait_until

pytestmark = pytest.mark.both_fronts  # the lean and the aiohttp front end alike (tests/conftest.py)


async def test_five_hundred_sequential_requests_reuse_at_most_two_backend_connections(cluster):
    c = await cluster(mixed=1)
    backend = c.backends[0]
    backend.reset_stats()
    for _ in range(500):
        status, _ = await c.chat()
        assert status == 200
    # a per-request session (FastDeploy's first router) would have opened 500
    assert backend.requests_total == 500
    assert backend.connections_accepted <= 2


async def test_non_streaming_answer_is_relayed_unchanged(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 5})
    status, body = await c.chat()
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] == 5


async def test_client_body_reaches_the_backend_byte_for_byte(cluster):
    c = await cluster(mixed=1)
    raw = b'{"messages": [{"role": "user", "content": "hi"}],   "custom_field": [1, 2, 3]}'
    async with c.http.post(c.url + "/v1/chat/completions", data=raw,
                           headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200
    assert c.backends[0].received[-1] == {"messages": [{"role": "user", "content": "hi"}], "custom_field": [1, 2, 3]}


async def test_streaming_relays_every_chunk_and_done_marker(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 6})
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        text = await resp.text()
    events = [line for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) == 6 + 2  # six tokens, the finish chunk, [DONE]


async def test_completions_endpoint_is_routed_too(cluster):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/completions", json={"prompt": "once upon"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["object"] == "text_completion"


async def test_requests_spread_over_instances_by_in_flight_count(cluster):
    # held at the backends until all ten are in: the counts cannot depend on which answers came first
    c = await cluster(mixed=2, behavior={"output_tokens": 5, "gate": asyncio.Event()})
    tasks = [asyncio.create_task(c.chat()) for _ in range(10)]
    assert await wait_until(lambda: sum(b.requests_in_flight for b in c.backends) == 10)
    assert sorted(b.requests_in_flight for b in c.backends) == [5, 5]
    for backend in c.backends:
        backend.behavior.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(status == 200 for status, _ in results)
    assert sorted(b.requests_total for b in c.backends) == [5, 5]


async def test_client_disconnect_mid_stream_closes_upstream_long_before_the_stream_would_end(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 1000, "token_delay": 0.05})  # a 50 s stream
    backend = c.backends[0]
    async with aiohttp.ClientSession() as client:
        resp = await client.post(c.url + "/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert resp.status == 200
        await resp.content.readline()  # the stream is flowing
        assert backend.requests_in_flight == 1
        resp.close()  # the client hangs up mid-stream
    # it takes milliseconds; 10 s is generous for a loaded machine and still 40 s short of the end
    assert await wait_until(lambda: backend.disconnects == 1, timeout=10), "backend never saw the disconnect"
    assert await wait_until(lambda: c.server.router.in_flight() == 0)


async def test_client_disconnect_while_backend_hangs_before_headers_closes_upstream(cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True})
    backend = c.backends[0]
    async with aiohttp.ClientSession() as client:
        task = asyncio.create_task(client.post(c.url + "/v1/chat/completions",
                                               json={"messages": [{"role": "user", "content": "x"}]}))
        assert await wait_until(lambda: backend.requests_in_flight == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await wait_until(lambda: backend.disconnects == 1), "backend never saw the disconnect"


async def test_upstream_error_status_and_body_pass_through(cluster):
    c = await cluster(mixed=1, behavior={"fail_status": 429})
    status, body = await c.chat()
    assert status == 429
    assert "error" in body


async def test_backend_reset_mid_stream_ends_with_an_error_event(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 50, "reset_after_chunks": 3})
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as resp:
        assert resp.status == 200
        text = await resp.text()
    events = [line for line in text.split("\n") if line.startswith("data: ")]
    assert len(events) == 4
    assert '"error"' in events[-1] and "upstream_error" in events[-1]
    assert "[DONE]" not in text


async def test_dead_backend_gives_502_not_a_hang(cluster, mock_backend_factory):
    c = await cluster(mixed=1)
    await c.backends[0].close()
    status, body = await c.chat()
    assert status == 502
    assert body["error"]["type"] == "upstream_error"
    assert "cannot connect" in body["error"]["message"]


async def test_upstream_timeout_gives_504(cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True}, request_timeout_secs=0.3)
    status, body = await c.chat()
    assert status == 504
    assert body["error"]["code"] == "request_timeout"
    assert await wait_until(lambda: c.backends[0].disconnects == 1)


async def test_router_shutdown_closes_open_upstream_streams(router_factory, mock_backend_factory, http):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=1000, token_delay=0.05))
    server = await router_factory()
    async with http.post(server.url + "/register", json=backend.register_info()) as resp:
        assert resp.status == 200
    client = aiohttp.ClientSession()
    try:
        resp = await client.post(server.url + "/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "x"}], "stream": True})
        await resp.content.readline()
        await server.close()
        assert await wait_until(lambda: backend.disconnects == 1)
        resp.close()
    finally:
        await client.close()
