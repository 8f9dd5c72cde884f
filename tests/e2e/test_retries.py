"""Retries: only before the client saw a byte, each on another instance, bounded, with backoff."""

from __future__ import annotations

import io
import json
import logging

from fdrouter.logs import configure_logging

from ..conftest import wait_until

FAST = {"retry_initial_backoff_secs": 0.001, "retry_max_backoff_secs": 0.01}


async def _stream(c, content: str = "hi") -> tuple[int, str]:
    payload = {"messages": [{"role": "user", "content": content}], "stream": True}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload) as resp:
        return resp.status, await resp.text()


async def test_connection_refused_is_retried_on_another_instance(cluster):
    c = await cluster(mixed=2, policy="round_robin", **FAST)
    dead, alive = c.backends
    await dead.close()
    for _ in range(6):
        status, body = await c.chat()
        assert status == 200, body
    assert alive.requests_total == 6


async def test_a_503_answer_is_retried_and_the_client_never_sees_it(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=0, **FAST)
    busy, ok = c.backends
    busy.behavior.fail_status = 503
    for _ in range(6):
        status, body = await c.chat()
        assert status == 200, body
    assert busy.requests_total >= 3  # round robin kept trying it first
    assert ok.requests_total == 6


async def test_a_500_answer_is_not_retried(cluster):
    c = await cluster(mixed=2, policy="round_robin", **FAST)
    broken, ok = c.backends
    broken.behavior.fail_status = 500
    statuses = [(await c.chat())[0] for _ in range(4)]
    assert statuses.count(500) == 2
    assert ok.requests_total == 2


async def test_retries_stop_after_retry_max_retries(cluster):
    c = await cluster(mixed=4, policy="round_robin", retry_max_retries=2, breaker_failure_threshold=0, **FAST)
    for b in c.backends:
        b.behavior.fail_status = 503
    status, body = await c.chat()
    assert status == 503
    assert sum(b.requests_total for b in c.backends) == 3  # first attempt + 2 retries, 3 distinct instances
    assert all(b.requests_total <= 1 for b in c.backends)


async def test_disable_retries_lets_the_first_failure_through(cluster):
    c = await cluster(mixed=2, policy="round_robin", disable_retries=True, breaker_failure_threshold=0)
    c.backends[0].behavior.fail_status = 503
    statuses = sorted([(await c.chat())[0] for _ in range(2)])
    assert statuses == [200, 503]


async def test_first_byte_timeout_is_retried_elsewhere(cluster):
    # 1 s: the healthy instance's headers, a few ms away, must never hit it, even on a loaded machine
    c = await cluster(mixed=2, policy="round_robin", first_byte_timeout_secs=1.0, **FAST)
    hung, ok = c.backends
    hung.behavior.hang_before_headers = True
    for _ in range(2):
        status, body = await c.chat()
        assert status == 200, body
    # round robin tried the hung instance first both times; each attempt was closed
    assert await wait_until(lambda: hung.disconnects == 2), "the hung attempts were not closed"


async def test_a_stream_that_breaks_after_the_first_byte_is_not_retried(cluster):
    c = await cluster(mixed=2, policy="round_robin", **FAST, behavior={"output_tokens": 6})
    dying, other = c.backends
    dying.behavior.reset_after_chunks = 2
    status, text = await _stream(c)
    assert status == 200
    events = [line for line in text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in text
    assert '"error"' in events[-1] and "broke off" in events[-1]  # an error event ends the stream
    assert other.requests_total == 0  # no duplicate answer from a second instance


async def test_pd_prefill_503_retries_the_pair_with_another_prefill(cluster):
    c = await cluster(splitwise=True, prefill=2, decode=1, prefill_policy="round_robin",
                      breaker_failure_threshold=0, **FAST)
    bad, good = c.prefill
    bad.behavior.fail_status = 503
    c.decode[0].behavior.token_delay = 0.05  # decode is still running when prefill fails
    for _ in range(4):
        status, body = await c.chat()
        assert status == 200, body
    assert good.requests_total == 4
    assert c.decode[0].requests_total >= 4


async def test_pd_decode_connection_failure_retries_with_another_decode(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2, decode_policy="round_robin", **FAST)
    dead, alive = c.decode
    await dead.close()
    for _ in range(4):
        status, body = await c.chat()
        assert status == 200, body
    assert alive.requests_total == 4


async def test_retries_are_counted_in_metrics(cluster, http):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=0, **FAST)
    c.backends[0].behavior.fail_status = 503
    for _ in range(4):
        assert (await c.chat())[0] == 200
    async with http.get(c.url + "/metrics") as resp:
        text = await resp.text()
    lines = [line for line in text.splitlines() if line.startswith("fdrouter_retries_total")]
    # round robin offered the failing instance first every time: four first attempts failed
    assert lines and sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 4.0


async def test_client_error_reaches_client_without_retry(cluster):
    c = await cluster(mixed=2, policy="round_robin", **FAST)
    c.backends[0].behavior.fail_status = 422
    async with c.http.post(c.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status == 422
    assert c.backends[1].requests_total == 0


async def test_request_id_header_is_forwarded_and_returned(cluster):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/chat/completions", headers={"X-Request-Id": "abc-123"},
                           json={"messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "abc-123"
    assert c.backends[0].received_headers[-1].get("X-Request-Id") == "abc-123"


async def test_request_id_is_generated_when_missing_or_invalid(cluster):
    c = await cluster(mixed=1)
    seen = set()
    for headers in ({}, {"X-Request-Id": "bad id with spaces"}, {"X-Request-Id": "x" * 500}):
        async with c.http.post(c.url + "/v1/chat/completions", headers=headers,
                               json={"messages": [{"role": "user", "content": "x"}]}) as resp:
            rid = resp.headers["X-Request-Id"]
        assert rid and " " not in rid and len(rid) <= 128
        seen.add(rid)
    assert len(seen) == 3


async def test_streamed_answer_carries_the_request_id(cluster):
    c = await cluster(mixed=1)
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload,
                           headers={"X-Request-Id": "stream-1"}) as resp:
        assert resp.headers["X-Request-Id"] == "stream-1"
        await resp.read()


async def test_error_answers_carry_the_request_id(cluster):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/chat/completions", data=b"{not json",
                           headers={"X-Request-Id": "bad-body-1", "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert resp.headers["X-Request-Id"] == "bad-body-1"


async def test_every_log_line_about_a_retried_request_carries_its_request_id(cluster):
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("info", "json", stream=stream)
    try:
        c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=0, **FAST)
        c.backends[0].behavior.fail_status = 503
        async with c.http.post(c.url + "/v1/chat/completions", headers={"X-Request-Id": "trace-me-7"},
                               json={"messages": [{"role": "user", "content": "x"}]}) as resp:
            assert resp.status == 200
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    retry_lines = [line for line in lines if "retry" in line["message"]]
    assert retry_lines, lines
    assert all(line["request_id"] == "trace-me-7" for line in retry_lines)
