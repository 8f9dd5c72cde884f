"""MockBehavior: the knobs a test turns while the backend runs, and the faults they inject."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from fdrouter.testing import MockBehavior

from .helpers import CHAT, COMPLETIONS, chat_body, post_json


async def test_behavior_changes_apply_to_the_running_server(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    statuses = []
    for fail_status in (None, 500, None):
        backend.behavior.fail_status = fail_status
        async with session.post(backend.url + CHAT, json=chat_body()) as response:
            statuses.append(response.status)
    assert statuses == [200, 500, 200]


async def test_health_status_follows_the_behavior_at_runtime(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    backend.behavior.health_status = 503
    async with session.get(backend.url + "/health") as response:
        assert response.status == 503
    backend.behavior.health_status = 200
    async with session.get(backend.url + "/health") as response:
        assert response.status == 200


async def test_token_delay_paces_non_streaming_answers(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4, token_delay=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(backend.url + CHAT, json=chat_body()) as response:
        assert response.status == 200
    assert loop.time() - started >= 0.15


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
