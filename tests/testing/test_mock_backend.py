"""Tests for fdrouter/testing/mock_backend.py and the pytest plugin that hands it out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from fdrouter.sim.engine_model import EngineModel
from fdrouter.testing import MockBackend, MockBehavior, closed_port, free_port
from fdrouter.testing.mock_backend import _behavior, _parser, _prompt_text, _Scheduler, _Sequence, main
from fdrouter.testing.pytest_plugin import mock_backends
from fdrouter.validate import prompt_text

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-model", "messages": [{"role": "user", "content": "hello"}], **extra}


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body, checking the framing on the way."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: "), block
        events.append(block[len("data: ") :])
    return events


async def read_events_until_broken(
    response: aiohttp.ClientResponse,
) -> tuple[list[str], BaseException | None]:
    """Read `data:` lines until the stream ends or breaks; return them and the error, if any."""
    events: list[str] = []
    try:
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(line[len(b"data: ") :].decode().rstrip("\n"))
    except aiohttp.ClientError as exc:
        return events, exc
    return events, None


def long_text(seed: str, chars: int = 1000) -> str:
    """`chars` characters that share no 64-character block with another seed's."""
    pieces = (f"{seed}{i:05d} " for i in range(chars))
    return "".join(pieces)[:chars]


def fast_engine(**fields: Any) -> EngineModel:
    """An engine model that takes no time unless told otherwise."""
    zero = {"prefill_base_s": 0.0, "prefill_per_token_s": 0.0, "decode_base_s": 0.0, "decode_per_seq_s": 0.0}
    return EngineModel(**{**zero, **fields})


def cached_tokens(answer: dict[str, Any]) -> int:
    return answer["usage"]["prompt_tokens_details"]["cached_tokens"]


async def post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def stream_timed(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float, float, list[dict[str, Any]]]:
    """Stream with usage; (seconds to the first token chunk, seconds to [DONE], the JSON chunks)."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = None
    chunks = []
    async with session.post(url, json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {"):
                first = loop.time() - started if first is None else first
                chunks.append(json.loads(line[len(b"data: ") :]))
    assert first is not None
    return first, loop.time() - started, chunks


async def metrics(session: aiohttp.ClientSession, backend: MockBackend) -> tuple[int, int]:
    """(fastdeploy:num_requests_running, fastdeploy:num_requests_waiting) as /metrics reports them."""
    async with session.get(backend.url + "/metrics") as response:
        values = dict(
            line.split() for line in (await response.text()).splitlines() if not line.startswith("#")
        )
    return int(values["fastdeploy:num_requests_running"]), int(values["fastdeploy:num_requests_waiting"])


def connection_refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- lifecycle -------------------------------------------------------------------------------------


async def test_start_binds_a_free_port_and_returns_itself() -> None:
    backend = MockBackend()
    try:
        assert await backend.start() is backend
        assert backend.port != 0
        assert backend.url == f"http://127.0.0.1:{backend.port}"
        assert not connection_refused(backend.port)
    finally:
        await backend.close()


async def test_close_twice_is_safe_and_stops_listening() -> None:
    with closed_port() as port:  # still held after close(): refused means the backend stopped listening
        async with MockBackend(port=port) as backend:
            assert not connection_refused(port)
        await backend.close()
        assert connection_refused(port)


async def test_close_before_start_is_a_no_op() -> None:
    backend = MockBackend()
    await backend.close()  # must neither raise nor hang
    assert backend.connections_open == 0 and backend.port == 0


async def test_start_twice_is_an_error(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    with pytest.raises(RuntimeError):
        await backend.start()


def test_unknown_role_is_rejected() -> None:
    with pytest.raises(ValueError, match="role"):
        MockBackend(role="verifier")


async def test_close_while_a_handler_hangs_returns_promptly(session) -> None:
    backend = await MockBackend(behavior=MockBehavior(hang_before_headers=True)).start()
    request = asyncio.ensure_future(session.post(backend.url + CHAT, json=chat_body()))
    try:
        assert await backend.wait_for(lambda b: b.requests_in_flight == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(backend.close(), timeout=10)
        # it takes about a millisecond; aiohttp alone would wait out its 60 s shutdown timeout
        assert loop.time() - started < 3
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(request, timeout=5)
        assert backend.requests_in_flight == 0
        assert backend.connections_open == 0
        assert backend.disconnects == 0  # the server went away, not the client
    finally:
        request.cancel()
        await backend.close()


async def test_close_while_a_stream_is_open_breaks_the_stream_promptly(session) -> None:
    backend = await MockBackend(behavior=MockBehavior(output_tokens=1000, token_delay=0.2)).start()
    try:
        async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
            assert response.status == 200
            await asyncio.wait_for(backend.close(), timeout=5)
            events, error = await asyncio.wait_for(read_events_until_broken(response), timeout=5)
        assert error is not None
        assert "[DONE]" not in events
        assert backend.requests_in_flight == 0
    finally:
        await backend.close()


# -- plain endpoints ------------------------------------------------------------------------------


async def test_health_answers_200_and_counts_checks(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    for _ in range(3):
        async with session.get(backend.url + "/health") as response:
            assert response.status == 200
    assert backend.health_checks == 3


async def test_health_status_follows_the_behavior_at_runtime(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    backend.behavior.health_status = 503
    async with session.get(backend.url + "/health") as response:
        assert response.status == 503
    backend.behavior.health_status = 200
    async with session.get(backend.url + "/health") as response:
        assert response.status == 200


async def test_slow_health_makes_a_short_client_timeout_fire(mock_backend_factory) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(health_delay=30))
    # 1 s: the request reaches the handler long before, even on a loaded machine; 30 s it waits there
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.get(backend.url + "/health")
    assert await backend.wait_for(lambda b: b.health_checks == 1)


async def test_health_delay_is_waited_out_before_answering(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(health_delay=0.2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.get(backend.url + "/health") as response:
        assert response.status == 200
    assert loop.time() - started >= 0.15


async def test_models_lists_the_served_model(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(model="ernie-mock")
    async with session.get(backend.url + "/v1/models") as response:
        assert response.status == 200
        assert await response.json() == {
            "object": "list",
            "data": [{"id": "ernie-mock", "object": "model", "owned_by": "mock"}],
        }


async def test_metrics_reports_running_requests_in_fastdeploy_prometheus_format(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    hanging = asyncio.ensure_future(session.post(backend.url + CHAT, json=chat_body()))
    try:
        assert await backend.wait_for(lambda b: b.requests_in_flight == 1)
        async with session.get(backend.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        hanging.cancel()
    lines = text.splitlines()
    assert "# TYPE fastdeploy:num_requests_running gauge" in lines
    assert "# TYPE fastdeploy:num_requests_waiting gauge" in lines
    assert any(line.startswith("# HELP fastdeploy:num_requests_running ") for line in lines)
    assert "fastdeploy:num_requests_running 1" in lines
    assert "fastdeploy:num_requests_waiting 0" in lines


async def test_metrics_requests_counts_scrapes(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    for _ in range(3):
        await metrics(session, backend)
    assert backend.metrics_requests == 3
    assert backend.health_checks == 0 and backend.requests_total == 0


async def test_abort_requests_records_the_body_and_answers_ok(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + "/v1/abort_requests", json={"request_ids": ["r1"]}) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    assert backend.aborts == [{"request_ids": ["r1"]}]
    assert backend.requests_total == 0  # aborts are not generation requests


async def test_unknown_path_is_404_and_wrong_method_is_405_in_openai_shape(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory()
    async with session.get(backend.url + "/v1/nothing") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == 404
    async with session.get(backend.url + CHAT) as response:
        assert response.status == 405
        assert "message" in (await response.json())["error"]


# -- generation -----------------------------------------------------------------------------------


async def test_chat_completion_returns_output_tokens_and_usage(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    body = {
        "model": "x",
        "messages": [{"role": "system", "content": "a" * 20}, {"role": "user", "content": "b" * 20}],
    }
    async with session.post(backend.url + CHAT, json=body) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert isinstance(answer["created"], int)
    assert answer["model"] == "mock-model"
    [choice] = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
    assert choice["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert backend.requests_total == 1
    assert backend.requests_in_flight == 0
    assert backend.disconnects == 0


async def test_completion_returns_text_and_usage(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    async with session.post(backend.url + COMPLETIONS, json={"model": "x", "prompt": "p" * 40}) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    [choice] = answer["choices"]
    assert choice["text"] == "tok0 tok1 "
    assert choice["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_token_id_prompts_count_one_token_per_id(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + COMPLETIONS, json={"prompt": [5, 6, 7]}) as response:
        assert (await response.json())["usage"]["prompt_tokens"] == 3


async def test_max_tokens_caps_the_generated_tokens(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=8))
    async with session.post(backend.url + CHAT, json=chat_body(max_tokens=2)) as response:
        answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "tok0 tok1 "
    assert answer["usage"]["completion_tokens"] == 2
    async with session.post(backend.url + CHAT, json=chat_body(max_tokens=100)) as response:
        assert (await response.json())["usage"]["completion_tokens"] == 8


async def test_streaming_chat_sends_one_chunk_per_token_then_a_finish_chunk(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await response.text())
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "tok0 tok1 tok2 "
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]
    assert "usage" not in chunks[-1]


async def test_streaming_ends_with_done_marker(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + COMPLETIONS, json={"prompt": "hi", "stream": True}) as response:
        text = await response.text()
    assert text.endswith("data: [DONE]\n\n")
    assert sse_events(text).count("[DONE]") == 1


async def test_streaming_completion_chunks_carry_text(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    async with session.post(backend.url + COMPLETIONS, json={"prompt": "hi", "stream": True}) as response:
        events = sse_events(await response.text())
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "tok0 tok1 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_streaming_usage_is_sent_only_when_include_usage_is_set(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4))
    body = chat_body(stream=True, stream_options={"include_usage": True})
    async with session.post(backend.url + CHAT, json=body) as response:
        events = sse_events(await response.text())
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 4,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all("usage" not in json.loads(e) for e in events[:-2])


async def test_token_delay_paces_non_streaming_answers(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4, token_delay=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(backend.url + CHAT, json=chat_body()) as response:
        assert response.status == 200
    assert loop.time() - started >= 0.15


async def test_token_delay_paces_stream_chunks(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4, token_delay=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        events = sse_events(await response.text())
    assert loop.time() - started >= 0.15
    assert len(events) == 6


@pytest.mark.parametrize("stream", [False, True])
async def test_prefill_role_answers_exactly_one_token(mock_backend_factory, session, stream) -> None:
    backend = await mock_backend_factory(role="prefill", behavior=MockBehavior(output_tokens=8))
    body = chat_body(stream=stream, max_tokens=50, stream_options={"include_usage": True})
    async with session.post(backend.url + CHAT, json=body) as response:
        assert response.status == 200
        if stream:
            events = sse_events(await response.text())
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["tok0 ", None]
            usage = chunks[-1]["usage"]
        else:
            answer = await response.json()
            assert answer["choices"][0]["message"]["content"] == "tok0 "
            usage = answer["usage"]
    assert usage["completion_tokens"] == 1


async def test_decode_role_generates_normally(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=5))
    async with session.post(backend.url + CHAT, json=chat_body()) as response:
        assert (await response.json())["usage"]["completion_tokens"] == 5


async def test_received_records_bodies_with_disaggregate_info_and_echoes_request_id(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory(role="decode")
    info = {"prefill": {"host_ip": "127.0.0.1", "port": 1}, "transfer_protocol": "ipc"}
    body = chat_body(request_id="req-42", disaggregate_info=info)
    async with session.post(backend.url + CHAT, json=body) as response:
        assert (await response.json())["id"] == "chatcmpl-req-42"
    assert list(backend.received) == [body]
    assert backend.received.maxlen == 1000


async def test_received_headers_keeps_each_generation_requests_headers(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(
        backend.url + CHAT, json=chat_body(), headers={"X-Request-Id": "abc"}
    ) as response:
        await response.read()
    async with session.get(backend.url + "/health", headers={"X-Request-Id": "not-generation"}) as response:
        await response.read()
    assert len(backend.received_headers) == len(backend.received) == 1
    assert backend.received_headers[-1]["x-request-id"] == "abc"  # case-insensitive, like HTTP


async def test_malformed_json_is_answered_400_with_an_openai_error(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    headers = {"Content-Type": "application/json"}
    async with session.post(backend.url + CHAT, data=b"{not json", headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == 400
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]
    assert backend.requests_total == 1
    assert len(backend.received) == 0
    async with session.post(backend.url + "/v1/abort_requests", data=b"[", headers=headers) as response:
        assert response.status == 400
    assert backend.aborts == []


# -- prefix cache ---------------------------------------------------------------------------------


async def test_the_same_long_prompt_is_cached_the_second_time(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    body = chat_body(messages=[{"role": "user", "content": long_text("q")}])  # 1000 chars: 250 tokens
    first = await post_json(session, backend.url + CHAT, body)
    second = await post_json(session, backend.url + CHAT, body)
    assert first["usage"]["prompt_tokens"] == second["usage"]["prompt_tokens"] == 250
    assert cached_tokens(first) == 0
    assert cached_tokens(second) == 240  # the 15 full 16-token blocks; the partial one never is
    assert (backend.prompt_tokens_total, backend.cached_tokens_total) == (500, 240)
    backend.reset_stats()  # zeroes the counters, keeps the cache
    assert cached_tokens(await post_json(session, backend.url + CHAT, body)) == 240
    assert (backend.prompt_tokens_total, backend.cached_tokens_total) == (250, 240)


async def test_prompts_sharing_a_system_prompt_share_only_its_full_blocks(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory()
    system = {"role": "system", "content": long_text("sys", 200)}  # 3 full blocks and 8 characters

    def body(user: str) -> dict[str, Any]:
        return chat_body(messages=[system, {"role": "user", "content": long_text(user, 300)}])

    assert cached_tokens(await post_json(session, backend.url + CHAT, body("alpha"))) == 0
    assert cached_tokens(await post_json(session, backend.url + CHAT, body("beta"))) == 3 * 16
    assert cached_tokens(await post_json(session, backend.url + CHAT, body("alpha"))) == 500 // 4 // 16 * 16


async def test_the_cache_evicts_least_recently_used_blocks_beyond_its_capacity(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(engine=fast_engine(cache_blocks=4)))

    async def cached(seed: str) -> int:  # every prompt is exactly two blocks
        return cached_tokens(
            await post_json(session, backend.url + COMPLETIONS, {"prompt": long_text(seed, 128)})
        )

    assert [await cached(seed) for seed in ("a", "b", "a")] == [0, 0, 32]  # a is now the most recent
    assert await cached("c") == 0  # full: b, the least recently used, goes
    assert [await cached(seed) for seed in ("a", "b")] == [32, 0]
    assert len(backend.prefix_cache) == 4


async def test_stream_usage_chunk_reports_cached_tokens(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    body = {"prompt": long_text("s"), "stream": True, "stream_options": {"include_usage": True}}
    usages = []
    for _ in range(2):
        async with session.post(backend.url + COMPLETIONS, json=body) as response:
            events = sse_events(await response.text())
        assert events[-1] == "[DONE]"
        usages.append(json.loads(events[-2])["usage"])
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 240]
    assert usages[1]["prompt_tokens"] == 250


async def test_token_id_prompts_are_cached_by_id(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    ids = list(range(40))
    assert cached_tokens(await post_json(session, backend.url + COMPLETIONS, {"prompt": ids})) == 0
    answer = await post_json(session, backend.url + COMPLETIONS, {"prompt": [*ids[:20], 99, 98]})
    assert (answer["usage"]["prompt_tokens"], cached_tokens(answer)) == (22, 16)


async def test_pd_prefill_looks_up_the_cache_and_decode_does_not(mock_backend_factory, session) -> None:
    prefill = await mock_backend_factory(role="prefill")
    decode = await mock_backend_factory(role="decode")
    body = chat_body(messages=[{"role": "user", "content": long_text("pd")}])
    for backend in (prefill, decode):
        answers = [await post_json(session, backend.url + CHAT, body) for _ in range(2)]
        assert [a["usage"]["prompt_tokens"] for a in answers] == [250, 250]
        assert [cached_tokens(a) for a in answers] == ([0, 240] if backend is prefill else [0, 0])
    assert (prefill.prompt_tokens_total, prefill.cached_tokens_total) == (500, 240)
    assert (decode.prompt_tokens_total, decode.cached_tokens_total, len(decode.prefix_cache)) == (0, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]},
        {"messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "x"}]},
        {"prompt": "plain"},
        {"prompt": ["one", "two"]},
    ],
)
def test_the_cached_text_is_the_routers_prompt_text(body) -> None:
    assert _prompt_text(body, chat="messages" in body) == prompt_text(body)


# -- engine model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_the_engine_model_answers_like_the_default_path(mock_backend_factory, session, stream) -> None:
    plain = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    timed = await mock_backend_factory(behavior=MockBehavior(output_tokens=3, engine=fast_engine()))
    answers = []
    for backend in (plain, timed):
        for body in (chat_body(request_id="r"), chat_body(request_id="r", max_tokens=0)):
            body.update(stream=stream, stream_options={"include_usage": True})
            async with session.post(backend.url + CHAT, json=body) as response:
                text = await response.text()
            answers.append(re.sub(r'"created": ?\d+', "", text))
    assert answers[:2] == answers[2:]
    assert "tok2" in answers[0] and "tok0" not in answers[1]


async def test_a_cached_prompt_has_a_shorter_time_to_first_token(mock_backend_factory, session) -> None:
    # 250-token prompts at 2 ms per uncached token: 500 ms of prefill uncached, 20 ms cached (10 tokens).
    engine = fast_engine(prefill_per_token_s=0.002, decode_base_s=0.001)
    prefill = engine.prefill_time(250)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2, engine=engine))
    url = backend.url + COMPLETIONS
    uncached, _, chunks = await stream_timed(session, url, {"prompt": long_text("a")})
    assert cached_tokens(chunks[-1]) == 0
    cached, _, chunks = await stream_timed(session, url, {"prompt": long_text("a")})
    assert cached_tokens(chunks[-1]) == 240
    other, _, chunks = await stream_timed(session, url, {"prompt": long_text("b")})  # same length, uncached
    assert cached_tokens(chunks[-1]) == 0
    # the uncached ones sleep at least their prefill (a lower bound, load cannot break it); the
    # cached one has 230 ms to spare below half of it, far more than a loaded machine's stalls
    assert min(uncached, other) >= prefill * 0.99, (uncached, other)
    assert cached < prefill / 2, (cached, uncached, other)


def test_the_scheduler_admits_fifo_up_to_max_batch_and_times_steps_by_batch_size() -> None:
    # The scheduler's decisions without the clock: plan a step, then finish it, as its loop does.
    engine = EngineModel(prefill_per_token_s=0.001, decode_base_s=0.004, decode_per_seq_s=0.001, max_batch=2)
    admitted: list[_Sequence] = []
    scheduler = _Scheduler(admitted.append)
    scheduler.engine = engine
    seqs = [_Sequence(completion_tokens=2, prompt_tokens=100, hashes=(), prefill=True) for _ in range(3)]
    scheduler.waiting.extend(seqs)

    def step() -> tuple[float, list[_Sequence], bool]:
        planned = scheduler._plan()
        scheduler._finish_step(planned[1], planned[2])
        return planned

    assert step() == (2 * engine.prefill_time(100), seqs[:2], True)  # one prefill for both, first token each
    assert admitted == seqs[:2] and list(scheduler.waiting) == seqs[2:]
    assert step() == (engine.step_time(2), seqs[:2], False)  # their second and last token
    assert step() == (engine.prefill_time(100), seqs[2:], True)
    assert step() == (engine.step_time(1), seqs[2:], False)
    assert scheduler.running == [] and all(s.finished and s.produced == 2 for s in seqs)


async def test_max_batch_one_makes_a_second_request_wait(mock_backend_factory, session) -> None:
    # the first request runs 2 s (200 steps of 10 ms): the checks below, a few ms, all fall inside it
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=200, engine=engine))
    assert await metrics(session, backend) == (0, 0)
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")  # the first request runs
        second = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body(max_tokens=2)))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        assert await metrics(session, backend) == (1, 1)
        assert not second.done()  # queued: the first has ~2 s of tokens left
        rest = await first.read()
    assert rest.endswith(b"data: [DONE]\n\n")
    answer = await second
    assert answer["usage"]["completion_tokens"] == 2
    assert await metrics(session, backend) == (0, 0)


async def test_a_client_leaving_frees_its_batch_slot(mock_backend_factory, session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=100_000, engine=engine))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")
        second = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body(max_tokens=2)))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        first.close()  # ~1000 s of tokens left: only a freed slot lets the second run within 10 s
    answer = await asyncio.wait_for(second, timeout=10)
    assert answer["usage"]["completion_tokens"] == 2
    assert backend.disconnects == 1
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0 and b.requests_waiting == 0)


async def test_a_client_leaving_while_queued_leaves_the_queue(mock_backend_factory, session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=1000, engine=engine))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")
        impatient = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body()))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        impatient.cancel()  # it gives up while queued (a client timeout would race its own arrival)
        await asyncio.gather(impatient, return_exceptions=True)
        assert await backend.wait_for(lambda b: b.disconnects == 1 and b.requests_waiting == 0)
        assert backend.requests_running == 1
        first.close()
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0)


async def test_closing_the_backend_ends_running_and_queued_requests(session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await MockBackend(behavior=MockBehavior(output_tokens=1000, engine=engine)).start()
    requests = [asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body())) for _ in range(2)]
    try:
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        await asyncio.wait_for(backend.close(), timeout=10)
        for request in requests:
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(request, timeout=10)
        assert (backend.requests_in_flight, backend.requests_waiting, backend.disconnects) == (0, 0, 0)
    finally:
        for request in requests:
            request.cancel()
        await backend.close()


# -- faults ---------------------------------------------------------------------------------------


async def test_a_gate_holds_generation_answers_until_it_is_set(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3, gate=asyncio.Event()))
    held = [asyncio.ensure_future(post_json(session, backend.url + COMPLETIONS, {"prompt": "x"})) for _ in range(2)]
    assert await backend.wait_for(lambda b: b.requests_in_flight == 2 and len(b.received) == 2)
    async with session.get(backend.url + "/health") as response:  # only generation waits
        assert response.status == 200
    assert not any(request.done() for request in held)
    backend.behavior.gate.set()
    assert [answer["usage"]["completion_tokens"] for answer in await asyncio.gather(*held)] == [3, 3]
    assert backend.requests_in_flight == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_fail_status_answers_that_status_with_an_openai_error(
    mock_backend_factory, session, stream
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(fail_status=503))
    async with session.post(backend.url + CHAT, json=chat_body(stream=stream)) as response:
        assert response.status == 503
        error = (await response.json())["error"]
    assert error["code"] == 503
    assert error["type"] == "server_error"
    assert error["message"]
    assert len(backend.received) == 1


async def test_behavior_changes_apply_to_the_running_server(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    statuses = []
    for fail_status in (None, 500, None):
        backend.behavior.fail_status = fail_status
        async with session.post(backend.url + CHAT, json=chat_body()) as response:
            statuses.append(response.status)
    assert statuses == [200, 500, 200]


@pytest.mark.parametrize(("reset_after", "expected_events"), [(0, 0), (2, 2), (100, 9)])
async def test_reset_after_chunks_breaks_the_stream_without_done(
    mock_backend_factory, session, reset_after, expected_events
) -> None:
    backend = await mock_backend_factory(
        behavior=MockBehavior(output_tokens=8, reset_after_chunks=reset_after)
    )
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        assert response.status == 200
        events, error = await asyncio.wait_for(read_events_until_broken(response), timeout=10)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert len(events) == expected_events
    assert "[DONE]" not in events
    assert await backend.wait_for(lambda b: b.connections_open == 0)
    assert backend.disconnects == 0  # the server cut the stream, the client did not leave


@pytest.mark.parametrize("stall_after", [0, 2])
async def test_stall_after_chunks_goes_silent_until_the_client_leaves(
    mock_backend_factory, session, stall_after
) -> None:
    backend = await mock_backend_factory(
        behavior=MockBehavior(output_tokens=8, stall_after_chunks=stall_after)
    )
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        assert response.status == 200
        for _ in range(stall_after):
            assert (await asyncio.wait_for(response.content.readline(), timeout=10)).startswith(b"data: ")
            assert await asyncio.wait_for(response.content.readline(), timeout=10) == b"\n"
        with pytest.raises(asyncio.TimeoutError):  # a window for an event that must not come
            await asyncio.wait_for(response.content.readline(), timeout=0.1)
        response.close()
    assert await backend.wait_for(lambda b: b.disconnects == 1)
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0)


async def test_hang_before_headers_times_the_client_out_then_counts_a_disconnect(
    mock_backend_factory,
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    # 1 s: the request reaches the handler long before, even on a loaded machine; it never answers
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.post(backend.url + CHAT, json=chat_body())
    assert len(backend.received) == 1
    assert await backend.wait_for(lambda b: b.disconnects == 1)
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0)


async def test_client_leaving_mid_stream_counts_a_disconnect(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=1000, token_delay=0.02))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        first = await asyncio.wait_for(response.content.readline(), timeout=5)
        assert first.startswith(b"data: ")
        response.close()  # drop the connection without reading the rest
    assert await backend.wait_for(lambda b: b.disconnects == 1)
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0)


async def test_completed_requests_are_not_counted_as_disconnects(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    for stream in (False, True):
        async with session.post(backend.url + CHAT, json=chat_body(stream=stream)) as response:
            await response.read()
    assert backend.requests_total == 2
    assert backend.disconnects == 0


# -- connection accounting ------------------------------------------------------------------------


async def test_fifty_requests_over_one_keep_alive_session_count_one_connection(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    async with aiohttp.ClientSession() as s:
        for _ in range(50):
            async with s.post(backend.url + CHAT, json=chat_body()) as response:
                assert response.status == 200
                await response.read()
        assert backend.connections_accepted == 1
        assert backend.connections_open == 1
    assert backend.requests_total == 50
    assert await backend.wait_for(lambda b: b.connections_open == 0)


async def test_five_sessions_count_five_connections(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    sessions = [aiohttp.ClientSession() for _ in range(5)]
    try:
        for s in sessions:
            for _ in range(3):
                async with s.get(backend.url + "/health") as response:
                    assert response.status == 200
        assert backend.connections_accepted == 5
        assert backend.connections_open == 5
    finally:
        for s in sessions:
            await s.close()
    assert await backend.wait_for(lambda b: b.connections_open == 0)
    assert backend.connections_accepted == 5


async def test_a_session_without_keep_alive_opens_a_connection_per_request(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(4):
            async with s.get(backend.url + "/health") as response:
                await response.read()
    assert backend.connections_accepted == 4
    assert await backend.wait_for(lambda b: b.connections_open == 0)


# -- helpers on the object ------------------------------------------------------------------------


async def test_register_info_describes_this_instance_and_takes_overrides(mock_backend_factory) -> None:
    backend = await mock_backend_factory(role="prefill")
    info = backend.register_info()
    assert info["role"] == "prefill"
    assert info["host_ip"] == "127.0.0.1"
    assert info["port"] == backend.port
    assert info["metrics_port"] == backend.port
    assert isinstance(info["connector_port"], int)
    assert isinstance(info["engine_worker_queue_port"], int)
    assert info["transfer_protocol"] == ["ipc", "rdma"]
    assert info["rdma_ports"] and info["device_ids"]
    assert info["tp_size"] == 1
    assert backend.register_info(transfer_protocol=["ipc"], tp_size=2)["transfer_protocol"] == ["ipc"]
    assert backend.register_info(tp_size=2)["tp_size"] == 2


async def test_reset_stats_zeroes_the_cumulative_counters(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + CHAT, json=chat_body()) as response:
        await response.read()
    async with session.get(backend.url + "/health") as response:
        await response.read()
    async with session.post(backend.url + "/v1/abort_requests", json={}) as response:
        await response.read()
    await metrics(session, backend)
    assert backend.prompt_tokens_total == 1
    backend.reset_stats()
    counters = (
        "connections_accepted",
        "requests_total",
        "health_checks",
        "disconnects",
        "metrics_requests",
        "prompt_tokens_total",
        "cached_tokens_total",
    )
    assert {name: getattr(backend, name) for name in counters} == dict.fromkeys(counters, 0)
    assert len(backend.received) == len(backend.received_headers) == 0
    assert backend.aborts == []
    assert backend.connections_open == 1  # still true: the session's connection is open


async def test_wait_for_reports_whether_the_predicate_came_true(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    assert await backend.wait_for(lambda b: b.requests_total == 0, timeout=0.1) is True
    assert await backend.wait_for(lambda b: b.requests_total == 1, timeout=0.05) is False


def test_free_port_returns_a_port_the_kernel_handed_out() -> None:
    # Binding the port again here would race with every other process on the machine (that is
    # free_port's caveat), so check what holds regardless: bind(0) picks from the ephemeral range.
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(low <= free_port() <= high for _ in range(20))


def test_a_closed_port_refuses_connections_and_cannot_be_taken_while_held() -> None:
    with closed_port() as port:
        assert connection_refused(port)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        with pytest.raises(OSError), closed_port(port=port):
            pass  # not even another holder gets it
        assert free_port() != port


async def test_a_backend_can_listen_on_a_closed_port_which_refuses_again_after_close() -> None:
    with closed_port() as port:
        async with MockBackend(port=port) as backend:
            assert backend.port == port and not connection_refused(port)
        assert connection_refused(port)
        async with MockBackend(port=port):  # a restart on the same port
            assert not connection_refused(port)


# -- pytest plugin --------------------------------------------------------------------------------


async def test_factory_fixture_hands_out_started_backends_on_the_requested_port(
    mock_backend_factory, session
) -> None:
    with closed_port() as port:
        backend = await mock_backend_factory(port=port, role="decode")
        assert backend.port == port
        assert backend.role == "decode"
        async with session.get(backend.url + "/health") as response:
            assert response.status == 200


async def test_factory_fixture_keeps_a_closed_backends_port_refusing_until_teardown(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    await backend.close()  # a dead instance: nothing else may start answering on its port
    assert connection_refused(backend.port)
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", backend.port))


def test_free_port_fixture_is_a_port_number(free_port) -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= free_port <= high


async def test_mock_backends_closes_everything_it_made_last_first() -> None:
    closed: list[str] = []
    # ports held past the exit, so that refused below can only mean the backends stopped listening
    with contextlib.ExitStack() as ports:
        async with mock_backends() as make:
            made = [await make(model=name, port=ports.enter_context(closed_port()))
                    for name in ("first", "second", "third")]
            for backend in made:
                original_close = backend.close

                async def close(backend: MockBackend = backend, original_close=original_close) -> None:
                    closed.append(backend.model)
                    await original_close()

                backend.close = close  # type: ignore[method-assign]
        assert closed == ["third", "second", "first"]
        assert all(connection_refused(backend.port) for backend in made)


# -- command line ---------------------------------------------------------------------------------


async def test_cli_prints_its_url_answers_health_and_exits_on_sigterm(session) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fdrouter.testing.mock_backend",
        "--port",
        "0",
        "--role",
        "decode",
        "--output-tokens",
        "3",
        "--loop",
        "asyncio",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"mock backend listening on (http://127\.0\.0\.1:(\d+)) role=decode\n", line)
        assert match, line
        url = match.group(1)
        async with session.get(url + "/health") as response:
            assert response.status == 200
        async with session.post(url + CHAT, json=chat_body()) as response:
            assert (await response.json())["usage"]["completion_tokens"] == 3
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
        assert await proc.stderr.read() == b""  # no tracebacks, no runpy double-import warning
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["--role", "verifier"],
        ["--port", "http"],
        ["--port", "70000"],
        ["--output-tokens", "-1"],
        ["--token-delay", "soon"],
        ["--bogus"],
        ["--max-batch", "4"],  # engine flags need --engine
        ["--engine", "--max-batch", "0"],
        ["--engine", "--prefill-per-token", "-1"],
        ["--engine", "--token-delay", "0.01"],  # two latency models at once
    ],
)
def test_cli_rejects_bad_flags_with_a_usage_error(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_cli_engine_flags_build_the_engine_model() -> None:
    parser = _parser()
    args = parser.parse_args(
        ["--engine", "--max-batch", "4", "--prefill-per-token", "0.001", "--decode-step", "0.02"]
    )
    behavior = _behavior(parser, args)
    assert behavior.engine == EngineModel(max_batch=4, prefill_per_token_s=0.001, decode_base_s=0.02)
    assert _behavior(parser, parser.parse_args([])).engine is None
    help_text = parser.format_help()
    for flag in ("--engine", "--max-batch", "--cache-blocks", "--prefill-per-token", "--decode-step"):
        assert flag in help_text
