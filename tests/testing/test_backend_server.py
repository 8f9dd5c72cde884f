"""MockBackend: lifecycle, the plain endpoints, PD roles, what it records, its prefix cache."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from fdrouter.testing import MockBackend, MockBehavior, closed_port

from .helpers import (
    CHAT,
    COMPLETIONS,
    cached_tokens,
    chat_body,
    connection_refused,
    fast_engine,
    long_text,
    metrics,
    post_json,
    read_events_until_broken,
    sse_events,
)

# -- lifecycle ---------------------------------------------------------------------------------


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
            assert not connection_refused(port) and backend.serving
        await backend.close()
        assert connection_refused(port) and not backend.serving


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


async def test_a_backend_can_listen_on_a_closed_port_which_refuses_again_after_close() -> None:
    with closed_port() as port:
        async with MockBackend(port=port) as backend:
            assert backend.port == port and not connection_refused(port)
        assert connection_refused(port)
        async with MockBackend(port=port):  # a restart on the same port
            assert not connection_refused(port)


# -- plain endpoints ---------------------------------------------------------------------------


async def test_health_answers_200_and_counts_checks(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    for _ in range(3):
        async with session.get(backend.url + "/health") as response:
            assert response.status == 200
    assert backend.health_checks == 3


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


# -- generation --------------------------------------------------------------------------------


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


# -- prefix cache ------------------------------------------------------------------------------


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


# -- helpers on the object ---------------------------------------------------------------------


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
