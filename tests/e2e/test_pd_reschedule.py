"""PD preemption rescheduling through the router: both modes, the budget, exclusion, a client leaving, /metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from ..conftest import wait_until

pytestmark = pytest.mark.both_fronts  # both sinks keep a stream open across attempts (tests/conftest.py)

CHAT = "/v1/chat/completions"
EIGHT = "".join(f"tok{i} " for i in range(8))
MESSAGES = [{"role": "user", "content": "hello"}]


def always(k: int) -> Any:
    return lambda body: k


async def stream(c, path: str = CHAT, **body: Any) -> tuple[int, list]:
    """POST a stream through the router: (status, decoded data events, '[DONE]' as is)."""
    payload = {"messages": MESSAGES, "stream": True, **body} if path == CHAT else {"prompt": "hi", "stream": True, **body}
    async with c.http.post(c.url + path, json=payload) as resp:
        text = await resp.text()
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return resp.status, [e if e == "[DONE]" else json.loads(e) for e in events]


def text_of(events: list) -> str:
    return "".join((c.get("delta") or {}).get("content") or c.get("text") or ""
                   for e in events if isinstance(e, dict) for c in e.get("choices", ()))


async def metric(c, name: str, instance: str) -> float:
    async with c.http.get(c.url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(f'{name}{{instance="{instance}"}}'):
                return float(line.split()[-1])
    return 0.0


async def test_a_preempted_request_is_rescheduled_and_the_client_gets_the_whole_answer(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 8, "preempt_after_tokens": 3})
    status, answer = await c.chat(request_id="r1")
    assert status == 200
    [choice] = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": EIGHT}  # no token ids: the client did not ask
    assert choice["finish_reason"] == "length"
    assert answer["id"] == "chatcmpl-r1"  # the first attempt's id, not a -retryN one
    assert answer["usage"]["completion_tokens"] == 8
    sent = list(c.decode[0].received)
    assert [b["request_id"] for b in sent] == ["r1", "r1-retry1", "r1-retry2"]
    assert [b.get("completion_token_ids") for b in sent] == [None, [0, 1, 2], [0, 1, 2, 3, 4, 5]]
    assert all(b["return_token_ids"] is True for b in sent)
    assert list(c.prefill[0].received) == sent  # each attempt is a whole new pair, same body to both legs


async def test_a_client_that_asked_for_token_ids_gets_all_of_them(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 8, "preempt_after_tokens": 5})
    status, answer = await c.chat(return_token_ids=True)
    assert status == 200
    assert answer["choices"][0]["message"]["completion_token_ids"] == list(range(8))


async def test_a_preempted_stream_reaches_the_client_as_one_continuous_stream(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 8, "preempt_after_tokens": 3})
    status, events = await stream(c, stream_options={"include_usage": True}, request_id="s1")
    assert status == 200
    assert text_of(events) == EIGHT  # no token twice, none missing
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [e for e in events if isinstance(e, dict)]
    assert {e["id"] for e in chunks} == {"chatcmpl-s1"}
    assert "pd_reschedule" not in json.dumps(chunks) and "_token_ids" not in json.dumps(chunks)
    assert sum("role" in ch["delta"] for e in chunks for ch in e["choices"]) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert chunks[-1]["usage"]["prompt_tokens"] == 3  # "hello" is one token to the mock, prefilled by 3 attempts
    assert [b.get("completion_token_ids") for b in c.decode[0].received] == [None, [0, 1, 2], [0, 1, 2, 3, 4, 5]]


async def test_a_preempted_completions_stream_keeps_the_token_ids_the_client_asked_for(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, behavior={"output_tokens": 6, "preempt_after_tokens": 4})
    status, events = await stream(c, "/v1/completions", return_token_ids=True)
    assert status == 200
    assert text_of(events) == "".join(f"tok{i} " for i in range(6))
    ids = [t for e in events if isinstance(e, dict) for ch in e["choices"] for t in ch.get("completion_token_ids", [])]
    assert ids == list(range(6))


async def test_past_the_retry_budget_the_client_gets_a_clear_503(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, preempt_retry_count=1,
                      behavior={"output_tokens": 8, "preempt_after_tokens": 2})
    status, answer = await c.chat()
    assert status == 503
    assert answer["error"]["code"] == "pd_reschedule_exhausted"
    assert "--preempt-retry-count 1" in answer["error"]["message"]
    assert c.decode[0].requests_total == 2  # the first attempt and one reschedule


async def test_a_stream_past_the_retry_budget_ends_with_an_error_event_after_its_tokens(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, preempt_retry_count=1,
                      behavior={"output_tokens": 8, "preempt_after_tokens": 2})
    status, events = await stream(c)
    assert status == 200
    assert text_of(events) == "tok0 tok1 tok2 tok3 "
    assert events[-1]["error"]["code"] == "pd_reschedule_exhausted"


async def test_retry_count_zero_passes_the_preempted_answer_through_as_fastdeploy_sent_it(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1, preempt_retry_count=0,
                      behavior={"output_tokens": 8, "preempt_after_tokens": 2})
    status, answer = await c.chat()
    assert status == 200 and answer["choices"][0]["finish_reason"] == "pd_reschedule"
    assert "return_token_ids" not in c.decode[0].received[-1]


async def test_with_exclusion_the_reschedule_goes_to_another_decode_instance(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2, preempt_retry_exclude_decode=True,
                      behavior={"output_tokens": 8})
    short, other = c.decode
    short.behavior.preempt_after_tokens = 2  # short of memory: preempts everything
    status, answer = await c.chat()
    assert status == 200 and answer["choices"][0]["message"]["content"] == EIGHT
    assert short.requests_total == 1
    assert [b["request_id"].endswith("-retry1") for b in other.received] == [True]


async def test_without_exclusion_the_policy_may_pick_the_same_decode_again(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2, preempt_retry_count=2, behavior={"output_tokens": 8})
    short, other = c.decode
    short.behavior.preempt_after_tokens = 2
    status, _ = await c.chat()  # request_num: both idle, the first registered wins every time
    assert status == 503
    assert short.requests_total == 3 and other.requests_total == 0


async def test_metrics_count_reschedules_per_decode_instance(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2, preempt_retry_exclude_decode=True,
                      behavior={"output_tokens": 8})
    short, other = c.decode
    short.behavior.preempt_after_tokens = 1
    for _ in range(3):
        status, _ = await c.chat()
        assert status == 200
    assert await metric(c, "fdrouter_pd_reschedules_total", short.url) == 3
    assert await metric(c, "fdrouter_pd_reschedules_total", other.url) == 0


async def test_a_resumed_stream_whose_next_decode_fails_before_sending_anything_is_retried_elsewhere(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=3, preempt_retry_exclude_decode=True,
                      behavior={"output_tokens": 6})
    short, broken, good = c.decode
    short.behavior.preempt_after_tokens = 2
    broken.behavior.fail_status = 503
    status, events = await stream(c)
    assert status == 200
    assert text_of(events) == "".join(f"tok{i} " for i in range(6))
    assert broken.requests_total == 1 and good.requests_total == 1


async def test_a_client_leaving_during_a_reschedule_closes_both_legs_and_leaves_nothing_in_flight(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2, preempt_retry_exclude_decode=True,
                      behavior={"output_tokens": 8})
    short, slow = c.decode
    (prefill,) = c.prefill
    short.behavior.preempt_after_tokens = 2
    short.behavior.gate = asyncio.Event()  # the first attempt's decode waits until its prefill is done
    slow.behavior.gate = asyncio.Event()  # the rescheduled attempt's legs wait until the client is gone
    answer = asyncio.ensure_future(c.http.post(c.url + CHAT, json={"messages": MESSAGES, "stream": True}))
    assert await wait_until(lambda: prefill.requests_total == 1 and prefill.requests_in_flight == 0)
    prefill.behavior.gate = asyncio.Event()
    short.behavior.gate.set()
    resp = await answer  # headers come with the first token
    try:
        assert resp.status == 200
        assert b"tok0" in await resp.content.readuntil(b"\n\n")
        assert await wait_until(lambda: slow.requests_in_flight == 1 and prefill.requests_in_flight == 1)
        resp.connection.transport.abort()  # the client hangs up while the new pair works
    finally:
        resp.release()
    assert await wait_until(lambda: slow.disconnects == 1 and prefill.disconnects == 1), "a leg was left open"
    assert await wait_until(lambda: c.server.router.in_flight() == 0)
    assert slow.requests_in_flight == 0 and prefill.requests_in_flight == 0


async def test_a_decode_error_answer_saying_pd_error_is_rescheduled_like_a_preemption(cluster, mock_backend_factory):
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def preempting(request: web.Request) -> web.Response:  # FastDeploy's error shape, status 500
        await request.read()
        return web.json_response({"error": {"message": "request r: PD Error: KV cache preempted",
                                            "type": "internal_error"}}, status=500)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post(CHAT, preempting)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        c = await cluster(splitwise=True, prefill=1, decode=0, preempt_retry_exclude_decode=True,
                          behavior={"output_tokens": 8})
        async with c.http.post(c.url + "/register", json={"role": "decode", "host_ip": "127.0.0.1",
                                                          "port": runner.addresses[0][1]}) as resp:
            assert resp.status == 200
        good = await mock_backend_factory(role="decode")
        assert (await c.register(good)).status == 200
        status, answer = await c.chat()
        assert status == 200 and answer["choices"][0]["finish_reason"] == "length"
        assert [b["request_id"].endswith("-retry1") for b in good.received] == [True]
        assert good.received[0].get("completion_token_ids") is None  # the error carried no tokens
    finally:
        await runner.cleanup()


async def test_a_client_that_stops_reading_a_reschedulable_pd_stream_is_cut_off_and_frees_the_decode(
    router_factory, mock_backend_factory, http
):
    async def firehose(request: web.Request) -> web.StreamResponse:  # far more than loopback socket buffers hold
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = b"data: " + b"y" * 65_536 + b"\n\n"
        try:
            for _ in range(2000):
                await response.write(chunk)
        except ConnectionError:
            pass  # the router closed the leg: that is the point
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post(CHAT, firehose)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        server = await router_factory(splitwise=True, disable_retries=True, request_timeout_secs=1.0,
                                      client_write_timeout_secs=2.0)
        prefill = await mock_backend_factory(role="prefill")
        for body in (prefill.register_info(), {"role": "decode", "host_ip": "127.0.0.1", "port": runner.addresses[0][1]}):
            async with http.post(server.url + "/register", json=body) as resp:
                assert resp.status == 200
        decode = next(s for s in server.router.registry.all() if s.role.value == "decode")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        me = writer.get_extra_info("sockname")

        def still_served() -> bool:
            return any(h.transport is not None and h.transport.get_extra_info("peername") == me
                       for h in server._runner.server.connections)

        body = json.dumps({"messages": MESSAGES, "stream": True}).encode()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await reader.readexactly(100)  # the stream started; from here on the client reads nothing
        assert await wait_until(lambda: decode.in_flight == 0, timeout=10)  # the 1 s request timeout ends the leg
        assert await wait_until(lambda: not still_served(), timeout=20)  # 2 s without progress: cut off
        writer.close()
    finally:
        await runner.cleanup()
