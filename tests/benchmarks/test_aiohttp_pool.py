"""The benchmark's "fdrouter (aiohttp client pool)" row runs the real router on AiohttpPool: it must be a router.

The ``cluster`` fixture's leak check also holds here: every response handed out by the pool
is released or closed (``acquired`` back to 0) by the end of each test.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from fdbench.aiohttp_pool import AiohttpPool, aiohttp_generation_pool

from fdrouter import upstream
from fdrouter.generation_pool import Http1Pool

from ..conftest import wait_until


async def test_the_swap_lasts_only_inside_the_block_and_the_router_then_uses_the_aiohttp_pool(cluster):
    with aiohttp_generation_pool():
        c = await cluster(mixed=1)
    assert upstream.Http1Pool is Http1Pool
    assert isinstance(c.server.router.upstream.generation_pool, AiohttpPool)


async def test_answers_and_streams_go_through_one_kept_alive_connection(cluster):
    with aiohttp_generation_pool():
        c = await cluster(mixed=1, behavior={"output_tokens": 5})
    backend = c.backends[0]
    control_connections = backend.connections_accepted  # the registration's health probe
    status, body = await c.chat("hi")
    assert status == 200 and body["usage"]["completion_tokens"] == 5
    status, text = await c.chat("hi", stream=True)
    assert status == 200 and text.count("data: ") == 5 + 2 and text.rstrip().endswith("data: [DONE]")
    for _ in range(3):
        assert (await c.chat("again"))[0] == 200
    assert backend.requests_total == 5
    # the long-lived session reuses its one generation connection
    assert backend.connections_accepted == control_connections + 1
    assert await wait_until(lambda: c.server.router.upstream.acquired_connections() == 0)


async def test_an_instance_error_status_and_body_pass_through(cluster):
    with aiohttp_generation_pool():
        c = await cluster(mixed=1, behavior={"fail_status": 429})
    status, body = await c.chat()
    assert status == 429 and "error" in body


async def test_a_client_leaving_mid_stream_closes_the_upstream_connection(cluster):
    with aiohttp_generation_pool():
        c = await cluster(mixed=1, behavior={"output_tokens": 1000, "token_delay": 0.05})  # a 50 s stream
    backend = c.backends[0]
    async with aiohttp.ClientSession() as client:
        resp = await client.post(c.url + "/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert resp.status == 200
        await resp.content.readline()  # the stream is flowing
        resp.close()
    assert await wait_until(lambda: backend.disconnects == 1, timeout=10), "backend never saw the disconnect"
    assert await wait_until(lambda: c.server.router.in_flight() == 0)


async def test_extra_header_lines_reach_the_instance_and_the_response_reads_like_http1pool_s():
    seen = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(headers=request.headers.copy(), body=await request.read())
        return web.Response(body=b'{"ok":1}', content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_post("/v1/completions", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        pool = AiohttpPool(limit=4)
        try:
            resp = await pool.post("127.0.0.1", server.port, b"/v1/completions", b'{"prompt":"x"}',
                                   b"X-Request-Id: abc-1\r\nX-Other: two words\r\n")
            assert pool.acquired == 1
            assert resp.status == 200 and resp.content_type == "application/json"
            assert resp.header("Content-Type") == "application/json; charset=utf-8"
            assert resp.header("x-missing", "none") == "none"
            assert await resp.read() == b'{"ok":1}'
            resp.release()
            resp.close()  # a second settle is a no-op, as in Http1Pool
            assert pool.acquired == 0
        finally:
            await pool.close()
    assert seen["headers"]["X-Request-Id"] == "abc-1" and seen["headers"]["x-other"] == "two words"
    assert seen["headers"]["Content-Type"] == "application/json" and seen["body"] == b'{"prompt":"x"}'


async def test_a_closed_pool_refuses_requests():
    pool = AiohttpPool(limit=4)
    await pool.close()
    assert pool.closed
    try:
        await pool.post("127.0.0.1", 9, b"/v1/completions", b"{}")
    except RuntimeError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("a closed pool sent a request")
