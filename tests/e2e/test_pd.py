"""Splitwise (PD) mode: disaggregate_info, both legs, and fail-fast across legs."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ..conftest import wait_until

pytestmark = pytest.mark.both_fronts  # the lean and the aiohttp front end alike (tests/conftest.py)


async def test_pd_request_reaches_both_legs_with_disaggregate_info(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 4})
    status, body = await c.chat()
    assert status == 200
    assert body["usage"]["completion_tokens"] == 4  # the decode instance's answer, not prefill's one token
    (p,), (d,) = c.prefill, c.decode
    sent_p, sent_d = p.received[-1], d.received[-1]
    assert sent_p == sent_d
    info = sent_d["disaggregate_info"]
    assert info["prefill"]["port"] == str(p.port) and info["decode"]["port"] == str(d.port)
    assert info["prefill"]["role"] == "PREFILL" and info["decode"]["role"] == "DECODE"
    assert info["role"] == "decode"
    # same host and both support ipc -> ipc, and cache_info says where decode's queue listens
    assert info["transfer_protocol"] == "ipc"
    assert info["cache_info"] == {"ipc": {"ip": "127.0.0.1", "port": str(d.port + 2), "device_ids": ["0"]}}
    assert isinstance(sent_d["request_id"], str) and sent_d["request_id"]


async def test_pd_uses_rdma_when_an_instance_lacks_ipc(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1)
    d = c.decode[0]
    resp = await c.register(d, transfer_protocol=["rdma"])  # re-register: refreshes the info
    assert resp.status == 200
    status, _ = await c.chat()
    assert status == 200
    info = d.received[-1]["disaggregate_info"]
    assert info["transfer_protocol"] == "rdma"
    assert info["cache_info"] == {"rdma": {"ip": "127.0.0.1", "port": str(d.port + 1), "rdma_port": [str(d.port + 3)]}}


async def test_pd_keeps_the_clients_request_id(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1)
    status, _ = await c.chat(request_id="req-42")
    assert status == 200
    assert c.prefill[0].received[-1]["request_id"] == "req-42"


async def test_pd_streaming_returns_the_decode_stream(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 5})
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "x"}], "stream": True}) as resp:
        assert resp.status == 200
        text = await resp.text()
    events = [line for line in text.split("\n") if line.startswith("data: ")]
    assert len(events) == 5 + 2 and events[-1] == "data: [DONE]"


async def test_prefill_failure_cancels_hanging_decode_instead_of_waiting_for_its_timeout(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, request_timeout_secs=60)
    (p,), (d,) = c.prefill, c.decode
    p.behavior.fail_status = 500
    d.behavior.hang_before_headers = True  # decode waits for a KV cache that will never come
    loop = asyncio.get_running_loop()
    start = loop.time()
    status, body = await c.chat()
    elapsed = loop.time() - start
    assert status == 500
    assert "error" in body
    # milliseconds when the legs fail together; waiting for the hung decode would take the 60 s
    # request timeout. 10 s tells the two apart with room for a loaded machine.
    assert elapsed < 10, f"client waited {elapsed:.2f}s for a failed prefill"
    assert await wait_until(lambda: d.disconnects == 1), "decode never saw the cancellation"


async def test_prefill_connection_failure_cancels_decode_and_answers_502(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, request_timeout_secs=60)
    (p,), (d,) = c.prefill, c.decode
    d.behavior.hang_before_headers = True
    await p.close()
    status, body = await c.chat()
    assert status == 502
    assert "prefill" in body["error"]["message"]
    assert await wait_until(lambda: d.disconnects == 1)


async def test_decode_failure_cancels_hanging_prefill(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, request_timeout_secs=60)
    (p,), (d,) = c.prefill, c.decode
    p.behavior.hang_before_headers = True
    d.behavior.fail_status = 503
    status, _ = await c.chat()
    assert status == 503
    assert await wait_until(lambda: p.disconnects == 1)


async def test_prefill_failure_mid_decode_stream_ends_stream_with_error_event(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1)
    (p,), (d,) = c.prefill, c.decode
    # prefill answers only once the decode stream has reached the client, then its connection
    # breaks: the failure surely comes mid-stream (timed delays would race the first decode chunk)
    p.behavior.gate = asyncio.Event()
    p.behavior.reset_after_chunks = 1
    d.behavior.output_tokens = 200
    d.behavior.token_delay = 0.02
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "x"}], "stream": True}) as resp:
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data: {")
        p.behavior.gate.set()
        text = (first + await resp.content.read()).decode()
    assert "[DONE]" not in text
    assert '"error"' in text.strip().split("\n")[-1]
    assert await wait_until(lambda: d.disconnects == 1)


async def test_splitwise_without_decode_instances_answers_503(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=0)
    status, body = await c.chat()
    assert status == 503
    assert body["error"]["code"] == "no_healthy_instance"
    assert "decode" in body["error"]["message"]


async def test_client_disconnect_mid_pd_stream_closes_both_legs(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1)
    (p,), (d,) = c.prefill, c.decode
    p.behavior.hang_before_headers = True  # prefill still busy when the client leaves
    d.behavior.output_tokens = 1000
    d.behavior.token_delay = 0.05
    async with aiohttp.ClientSession() as client:
        resp = await client.post(c.url + "/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "x"}], "stream": True})
        await resp.content.readline()
        resp.close()
    assert await wait_until(lambda: d.disconnects == 1 and p.disconnects == 1)
    assert await wait_until(lambda: c.server.router.in_flight() == 0)
