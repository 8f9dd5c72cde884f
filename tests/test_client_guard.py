"""Slow and broken clients: header, body and keep-alive timeouts, keys before bodies, protocol errors.

These talk raw bytes to a real router on loopback, as a slowloris attacker or a broken client
would. Every read is bounded, so a regression shows as a failure, never as a hang.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from .conftest import wait_until

pytestmark = pytest.mark.both_fronts  # the lean and the aiohttp front end alike (tests/conftest.py)

CHAT_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"


async def _connect(server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _answer(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP answer, then EOF expected or not; bounded."""
    raw = await asyncio.wait_for(reader.read(65536), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def _closed(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True once the router closed the connection (EOF), reading and dropping whatever comes first."""
    async def until_eof() -> None:
        while await reader.read(65536):
            pass
    await asyncio.wait_for(until_eof(), timeout)
    return True


def _connections(server) -> int:
    return len(server._runner.server.connections)


async def test_a_request_head_trickled_byte_by_byte_gets_408_and_is_closed_after_the_header_timeout(router_factory):
    server = await router_factory(client_header_timeout_secs=0.5)
    reader, writer = await _connect(server)
    answer = asyncio.ensure_future(_answer(reader))
    for byte in CHAT_HEAD:  # one byte every 50 ms: the head would take ~4 s, the timeout is 0.5 s
        if answer.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    status, headers, body = await answer
    assert status == 408 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and "--client-header-timeout-secs" in error["message"]
    assert await _closed(reader)
    writer.close()


async def test_an_upload_that_stops_short_of_its_content_length_gets_408_after_the_body_timeout(router_factory):
    server = await router_factory(client_body_timeout_secs=0.5)
    reader, writer = await _connect(server)
    writer.write(CHAT_HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"messages": [')  # and then nothing
    status, _, body = await _answer(reader)
    assert status == 408
    assert "--client-body-timeout-secs" in json.loads(body)["error"]["message"]
    assert await _closed(reader)
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(router_factory):
    server = await router_factory(client_keepalive_timeout_secs=0.5)
    reader, writer = await _connect(server)
    writer.write(CHAT_HEAD + b"Content-Length: 2\r\n\r\n{}")  # a generation request: either front end's
    status, headers, _ = await _answer(reader)
    assert status == 400 and headers.get("connection") != "close"
    assert await _closed(reader)  # nothing more was sent: the idle connection is closed
    writer.close()


async def test_without_the_api_key_an_upload_is_refused_before_its_body_arrives(router_factory):
    server = await router_factory(api_key="sesame", client_body_timeout_secs=60)
    reader, writer = await _connect(server)
    writer.write(CHAT_HEAD + b"Content-Length: 100000\r\n\r\n")  # the body never comes
    status, _, body = await _answer(reader, timeout=10)  # well before the 60 s body timeout
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    writer.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/register"])
async def test_an_authorization_header_that_is_not_utf8_is_a_401_not_a_500(router_factory, path):
    server = await router_factory(api_key="sesame", admin_api_key="open")
    reader, writer = await _connect(server)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n".encode()
                 + b"Authorization: Bearer \xff\xfe\r\n\r\n{}")
    status, _, body = await _answer(reader)
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
    writer.close()


async def test_an_oversized_header_gets_an_openai_shaped_431_and_one_log_line_without_traceback(
    router_factory, caplog
):
    server = await router_factory()
    caplog.set_level(logging.DEBUG)
    reader, writer = await _connect(server)
    writer.write(CHAT_HEAD + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n")
    status, headers, body = await _answer(reader)
    assert status == 431 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "http_431"
    writer.close()
    records = [r for r in caplog.records if "431" in r.getMessage() or r.exc_info]
    assert len(records) == 1 and records[0].exc_info is None and records[0].levelno <= logging.INFO


async def test_a_hundred_stalled_uploads_neither_block_health_nor_outlive_the_body_timeout(router_factory, http):
    server = await router_factory(client_body_timeout_secs=1.0)
    stalled = []
    for _ in range(100):
        reader, writer = await _connect(server)
        writer.write(CHAT_HEAD + b"Content-Length: 1000\r\n\r\n{")
        stalled.append((reader, writer))
    assert await wait_until(lambda: _connections(server) >= 100)
    async with http.get(server.url + "/health") as resp:
        assert resp.status == 200
    # each stalled upload is answered and closed by the router after ~1 s (plus 1 s lingering)
    closed = await asyncio.gather(*(_closed(reader, timeout=20) for reader, _ in stalled))
    assert all(closed)
    for _, writer in stalled:
        writer.close()


async def test_closing_the_router_does_not_wait_for_a_request_that_is_still_uploading(router_factory):
    server = await router_factory(client_body_timeout_secs=60, shutdown_grace_period_secs=30)
    server.shutdown_timeout = 30  # the fixture's 2 s would hide the difference
    reader, writer = await _connect(server)
    writer.write(CHAT_HEAD + b"Content-Length: 1000\r\n\r\n{")
    assert await wait_until(lambda: _connections(server) == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(server.close(), 25)  # would take the whole 30 s grace period if it waited
    assert loop.time() - started < 10  # generous: only aiohttp's own 2 s connection shutdown remains
    writer.close()
