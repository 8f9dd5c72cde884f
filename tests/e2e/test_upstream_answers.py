"""What an instance sends back: headers relayed end to end, caps on heads and buffered bodies,
and a client that stops reading cannot hold an instance busy."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from ..conftest import wait_until

pytestmark = pytest.mark.both_fronts  # the lean and the aiohttp front end alike (tests/conftest.py)

BODY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


class Instance:
    """An instance whose answer a test writes by hand."""

    def __init__(self, answer) -> None:
        self.answer = answer
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/chat/completions", self._generate)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        self.port = 0
        self.closed_streams = 0

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        try:
            return await self.answer(request)
        except ConnectionError:  # the router closed the upstream connection: that is the point
            self.closed_streams += 1
            return web.Response(status=499)

    async def start(self) -> Instance:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port
        return self

    async def close(self) -> None:
        await self.runner.cleanup()


@pytest_asyncio.fixture
async def instance() -> AsyncIterator:
    made: list[Instance] = []

    async def make(answer) -> Instance:
        made.append(await Instance(answer).start())
        return made[-1]

    yield make
    for inst in made:
        await inst.close()


async def _router_with(router_factory, http, inst: Instance, **config):
    server = await router_factory(disable_retries=True, **config)
    body = {"role": "mixed", "host_ip": "127.0.0.1", "port": inst.port}
    async with http.post(server.url + "/register", json=body) as resp:
        assert resp.status == 200
    return server


async def test_an_answers_content_encoding_and_own_headers_reach_the_client_hop_by_hop_ones_do_not(
    router_factory, http, instance
):
    async def gzipped(request):
        return web.Response(body=gzip.compress(json.dumps(BODY).encode()), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip", "X-Engine-Version": "2.6",
            "Keep-Alive": "timeout=5", "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1"})

    server = await _router_with(router_factory, http, await instance(gzipped))
    async with http.post(server.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "gzip" and resp.headers["X-Engine-Version"] == "2.6"
        assert "X-Secret-Hop" not in resp.headers and "Keep-Alive" not in resp.headers
        assert await resp.json() == BODY  # aiohttp decoded the gzip: the bytes were what the header says
        assert resp.headers["X-Request-Id"]  # the router's own header is still there


async def test_a_streams_headers_are_relayed_too(router_factory, http, instance):
    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Trace": "abc",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        await response.write(b'data: {"choices": []}\n\ndata: [DONE]\n\n')
        return response

    server = await _router_with(router_factory, http, await instance(stream))
    async with http.post(server.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.headers["X-Trace"] == "abc" and resp.headers["Cache-Control"] == "no-store"
        assert (await resp.read()).endswith(b"data: [DONE]\n\n")


async def test_an_answer_with_oversized_headers_is_a_502_naming_the_cap(router_factory, http, instance):
    async def huge_head(request):
        return web.json_response(BODY, headers={f"X-Junk-{i}": "x" * 1000 for i in range(100)})  # ~100 KB

    server = await _router_with(router_factory, http, await instance(huge_head))
    async with http.post(server.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 502
        assert "headers are over 65536 bytes" in (await resp.json())["error"]["message"]


async def test_a_buffered_answer_over_max_response_bytes_is_a_502_and_a_stream_of_that_size_is_not(
    router_factory, http, instance
):
    big = b"x" * 300_000

    async def answer(request):
        if (await request.json()).get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(0, len(big), 10_000):
                await response.write(b"data: " + big[i:i + 10_000] + b"\n\n")
            return response
        return web.Response(body=big, content_type="application/json")

    server = await _router_with(router_factory, http, await instance(answer), max_response_bytes=100_000)
    async with http.post(server.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 502
        assert "--max-response-bytes (100000 bytes)" in (await resp.json())["error"]["message"]
    async with http.post(server.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 200 and len(await resp.read()) > 300_000


async def test_a_client_that_stops_reading_releases_the_instance_when_the_upstream_ends_and_is_cut_off(
    router_factory, http, instance
):
    async def firehose(request):  # far more than loopback socket buffers hold
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = b"data: " + b"y" * 65_536 + b"\n\n"
        for _ in range(2000):
            await response.write(chunk)
        return response

    inst = await instance(firehose)
    server = await _router_with(router_factory, http, inst, request_timeout_secs=1.0, client_write_timeout_secs=2.0)
    state = server.router.registry.all()[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    me = writer.get_extra_info("sockname")

    def still_served() -> bool:  # the router still holds this client's connection
        return any(h.transport is not None and h.transport.get_extra_info("peername") == me
                   for h in server._runner.server.connections)

    body = json.dumps({**CHAT, "stream": True}).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await reader.readexactly(100)  # the stream started; from here on the client reads nothing
    assert await wait_until(lambda: state.in_flight == 1)
    # the 1 s request timeout ends the upstream leg: the instance's load goes back at once,
    # although the router is still stuck writing to this client
    assert await wait_until(lambda: state.in_flight == 0, timeout=10)
    # then, 2 s without progress, the write watchdog aborts the client's connection
    assert still_served()
    assert await wait_until(lambda: not still_served(), timeout=20)

    async def drained_to_the_end() -> bool:
        try:
            while await reader.read(1 << 20):
                pass
        except ConnectionResetError:
            pass
        return True

    assert await asyncio.wait_for(drained_to_the_end(), 20)  # EOF or reset: the router is gone
    writer.close()
