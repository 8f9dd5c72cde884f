"""The generation pool: keep-alive reuse, release only after a whole answer, and no leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from fdrouter.generation_pool import ConnectError, Http1Pool, ResponseBroken
from fdrouter.testing import MockBehavior, closed_port

from .conftest import wait_until
from .generation_pool_fakes import FakeNetwork

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


class RawServer:
    """A loopback TCP server whose handler writes raw bytes: for answers aiohttp won't produce."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


@pytest.fixture
async def pool():
    p = Http1Pool(limit=16, total_timeout=5)
    yield p
    assert p.acquired == 0, "a response was neither released nor closed"
    await p.close()


async def test_sequential_requests_reuse_one_keep_alive_connection(pool, mock_backend_factory):
    backend = await mock_backend_factory()
    for _ in range(100):
        resp = await pool.post(backend.host, backend.port, b"/v1/completions", b'{"prompt": "x"}')
        assert resp.status == 200 and b"text_completion" in await resp.read()
        resp.release()
    assert backend.connections_accepted == 1
    assert pool.connections_opened == 1


async def test_chunked_sse_body_arrives_whole_and_in_pieces(pool, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=5))
    stream = b'{"prompt": "x", "stream": true}'
    resp = await pool.post(backend.host, backend.port, b"/v1/completions", stream)
    assert resp.content_type == "text/event-stream"
    body = b"".join([chunk async for chunk in resp.iter_chunks()])
    resp.release()
    assert body.count(b"data: ") == 5 + 2 and body.endswith(b"data: [DONE]\n\n")  # tokens, finish, [DONE]
    # in pieces: events come out while the answer is still open (it stays open until we leave),
    # not only once it is complete; counting chunks instead would depend on how TCP split them
    backend.behavior.stall_after_chunks = 2
    resp = await pool.post(backend.host, backend.port, b"/v1/completions", stream)
    pieces, received = resp.iter_chunks(), b""
    while received.count(b"data: ") < 2:
        received += await anext(pieces)
    assert b"[DONE]" not in received
    resp.close()


async def test_releasing_an_unfinished_answer_closes_the_connection(pool, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=500, token_delay=0.01))
    resp = await pool.post(backend.host, backend.port, b"/v1/completions", b'{"prompt": "x", "stream": true}')
    resp.release()  # body not read: this connection must not be reused
    assert await backend.wait_for(lambda b: b.disconnects == 1)
    backend.behavior.output_tokens = 1
    resp = await pool.post(backend.host, backend.port, b"/v1/completions", b'{"prompt": "x"}')
    await resp.read()
    resp.release()
    assert pool.connections_opened == 2


async def test_answer_framed_by_connection_close_is_complete(pool):
    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nhello ")
        writer.write(b"world")
        await writer.drain()

    async with RawServer(handler) as server:
        resp = await pool.post("127.0.0.1", server.port, b"/", b"{}")
        assert await resp.read() == b"hello world"
        resp.release()


async def test_stale_idle_connection_is_retried_once_on_a_new_one(pool):
    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if n == 1:
            await _read_request(reader)  # the second request on this connection: drop it unanswered
            return
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        for _ in range(2):
            resp = await pool.post("127.0.0.1", server.port, b"/", b"{}")
            assert await resp.read() == b"ok"
            resp.release()
        assert server.connections == 2


async def test_a_fresh_connection_that_dies_unanswered_is_not_retried(pool):
    async def handler(reader, writer, n):
        await _read_request(reader)

    async with RawServer(handler) as server:
        with pytest.raises(ResponseBroken):
            await pool.post("127.0.0.1", server.port, b"/", b"{}")
        assert server.connections == 1


async def test_garbage_instead_of_http_is_a_broken_response(pool):
    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        with pytest.raises(ResponseBroken, match="invalid HTTP"):
            await pool.post("127.0.0.1", server.port, b"/", b"{}")


async def test_total_timeout_fires_mid_body_and_frees_the_connection():
    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        # the headers come back within a few loop turns; 1 s is far above even a loaded machine's
        # stalls (so the timeout cannot fire before them), and far below the handler's 5 s of silence
        pool = Http1Pool(limit=4, total_timeout=1.0)
        resp = await pool.post("127.0.0.1", server.port, b"/", b"{}")
        with pytest.raises(TimeoutError):
            await resp.read()
        resp.close()
        assert pool.acquired == 0
        await pool.close()


async def test_connection_limit_makes_extra_requests_wait(mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    pool = Http1Pool(limit=2)
    tasks = [asyncio.create_task(pool.post(backend.host, backend.port, b"/v1/completions", b"{}"))
             for _ in range(3)]
    assert await backend.wait_for(lambda b: b.requests_in_flight == 2)
    await asyncio.sleep(0.05)  # a window for a third connection that must not come
    assert pool.acquired == 2 and backend.connections_accepted == 2
    await pool.close()  # wakes every waiter: nothing hangs
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=2)
    assert all(isinstance(r, (ResponseBroken, RuntimeError)) for r in results)
    assert pool.acquired == 0


async def test_large_bodies_pass_intact_through_backpressure(pool):
    payload = bytes(range(256)) * 8192  # 2 MiB, well over the pause threshold

    async def handler(reader, writer, n):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(handler) as server:
        resp = await pool.post("127.0.0.1", server.port, b"/", b"{}")
        received = bytearray()
        async for chunk in resp.iter_chunks():
            received += chunk
            await asyncio.sleep(0)  # a slow client
        resp.release()
        assert bytes(received) == payload


async def test_connect_failure_is_a_connect_error_and_lends_nothing(pool):
    with closed_port() as port, pytest.raises(ConnectError, match="refused"):
        await pool.post("127.0.0.1", port, b"/", b"{}")


# -- regressions ---------------------------------------------------------------------------


async def test_a_request_waiting_for_a_busy_hosts_slot_holds_no_global_slot(mock_backend_factory):
    # limit 2, one per host: of two requests hung on one instance, the second waits for that
    # host's slot; it used to sit on the second global slot meanwhile, so a request to a
    # healthy instance waited for the hung ones
    hung = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    healthy = await mock_backend_factory()
    pool = Http1Pool(limit=2, limit_per_host=1)
    stuck = [asyncio.create_task(pool.post(hung.host, hung.port, b"/v1/completions", b"{}")) for _ in range(2)]
    assert await hung.wait_for(lambda b: b.requests_in_flight == 1)
    resp = await asyncio.wait_for(pool.post(healthy.host, healthy.port, b"/v1/completions", b'{"prompt": "x"}'), 10)
    assert resp.status == 200 and b"text_completion" in await resp.read()
    resp.release()
    assert hung.connections_accepted == 1  # the per-host limit still holds
    await pool.close()
    results = await asyncio.wait_for(asyncio.gather(*stuck, return_exceptions=True), 10)
    assert all(isinstance(r, (ResponseBroken, RuntimeError)) for r in results)
    assert pool.acquired == 0


async def _answer_in_reads(monkeypatch, *reads: bytes):
    """A caller posts through a fake network and reads the body as soon as post() returns, as the
    router does; the instance answers with ``reads``, the loop turning after each."""
    network = FakeNetwork().install(asyncio.get_running_loop(), monkeypatch)
    pool = Http1Pool(limit=4)

    async def caller():
        resp = await pool.post("10.0.0.5", 8000, b"/v1/completions", b"{}")
        status = resp.status  # what the router acts on
        body = await resp.read()
        return resp, status, body

    task = asyncio.create_task(caller())
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    for data in reads:
        network.last.feed(data)
        for _ in range(3):  # the loop turns in which a caller woken by this read would get its answer
            await asyncio.sleep(0)
    resp, status, body = await asyncio.wait_for(task, 10)
    resp.release()
    assert pool.acquired == 0
    return resp, status, body


async def test_a_100_continue_in_its_own_read_is_skipped_for_the_final_answer(monkeypatch):
    _, status, body = await _answer_in_reads(
        monkeypatch, b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert (status, body) == (200, b"ok")


async def test_informational_answers_in_the_same_read_as_the_final_one_are_skipped(monkeypatch):
    resp, status, body = await _answer_in_reads(
        monkeypatch,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    assert (status, body, resp.header("link")) == (200, b"{}", "")
