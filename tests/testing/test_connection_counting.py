"""Connection accounting: real TCP connections, as the server saw them open and close."""

from __future__ import annotations

import aiohttp

from .helpers import CHAT, chat_body


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
