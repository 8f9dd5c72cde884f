"""Each timeout fires on its own, names itself to the client, and closes the upstream connection."""

from __future__ import annotations

import json

from ..conftest import wait_until


def _last_event(text: str) -> dict:
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    return json.loads(events[-1])


async def test_first_byte_timeout_answers_504_naming_the_setting(cluster):
    c = await cluster(mixed=1, first_byte_timeout_secs=0.2, request_timeout_secs=30)
    backend = c.backends[0]
    backend.behavior.hang_before_headers = True
    status, body = await c.chat()
    assert status == 504
    assert body["error"]["code"] == "first_byte_timeout"
    assert "--first-byte-timeout-secs" in body["error"]["message"]
    assert await wait_until(lambda: backend.disconnects == 1)


async def test_stream_idle_before_the_first_chunk_answers_a_plain_504(cluster):
    c = await cluster(mixed=1, stream_idle_timeout_secs=0.2, behavior={"output_tokens": 5})
    backend = c.backends[0]
    backend.behavior.stall_after_chunks = 0  # headers, then silence
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload) as resp:
        status = resp.status
        body = await resp.json()
    # nothing had gone to the client yet, so it gets a clean JSON error, not a cut stream
    assert status == 504
    assert body["error"]["code"] == "stream_idle_timeout"
    assert await wait_until(lambda: backend.disconnects == 1)


async def test_stream_idle_timeout_mid_stream_sends_a_final_error_event(cluster):
    # 1 s: the two chunks come right after the headers; a loaded machine's stall must not let the
    # timeout fire before them (that would be the plain 504 of the test above)
    c = await cluster(mixed=1, stream_idle_timeout_secs=1.0, disable_retries=True)
    backend = c.backends[0]
    backend.behavior.output_tokens = 4
    backend.behavior.token_delay = 0.0
    backend.behavior.stall_after_chunks = 2  # two chunks, then silence
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200
        text = await resp.text()
    error = _last_event(text)["error"]
    assert error["code"] == "stream_idle_timeout"
    assert "--stream-idle-timeout-secs" in error["message"]
    assert await wait_until(lambda: backend.disconnects == 1)


async def test_total_request_timeout_ends_a_slow_stream_naming_itself(cluster):
    # 1 s: the stream must have started by then (it starts within ms), and cannot have ended (5 s)
    c = await cluster(mixed=1, request_timeout_secs=1.0, stream_idle_timeout_secs=5)
    backend = c.backends[0]
    backend.behavior.output_tokens = 100
    backend.behavior.token_delay = 0.05  # chunks keep coming, but the whole answer needs 5 s
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200
        text = await resp.text()
    error = _last_event(text)["error"]
    assert error["code"] == "request_timeout"
    assert "--request-timeout-secs" in error["message"]
    assert await wait_until(lambda: backend.disconnects == 1)
