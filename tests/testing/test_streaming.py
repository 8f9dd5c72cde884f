"""Streamed answers: paced by token_delay, cut or stalled as the behavior says, disconnects counted."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from fdrouter.testing import MockBehavior

from .helpers import CHAT, chat_body, read_events_until_broken, sse_events


async def test_token_delay_paces_stream_chunks(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4, token_delay=0.05))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        events = sse_events(await response.text())
    assert loop.time() - started >= 0.15
    assert len(events) == 6


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
