"""The generation pool's HTTP/1.1 protocol, driven byte by byte through a fake transport (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from fdrouter.generation_connection import NoAnswer, Response
from fdrouter.generation_pool import Http1Pool, ResponseBroken
from fdrouter.generation_state import (
    ConnState,
    Event,
    IllegalTransition,
    Phase,
    check_conn_transition,
    next_phase,
)

from .conftest import wait_until
from .generation_pool_fakes import FakeNetwork, FakeTransport

HOST, PORT = "10.0.0.5", 8000
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
async def network(monkeypatch) -> FakeNetwork:
    return FakeNetwork().install(asyncio.get_running_loop(), monkeypatch)


@pytest.fixture
async def pool():
    p = Http1Pool(limit=8, total_timeout=30)
    yield p
    assert p.acquired == 0, "a response was neither released nor closed"
    await p.close()


async def _sent(network: FakeNetwork, pool: Http1Pool, host: str = HOST) -> tuple[asyncio.Task[Response], FakeTransport]:
    """Start a POST and return it with the connection it was written to."""
    before = sum(t.requests() for t in network.transports)
    task = asyncio.create_task(pool.post(host, PORT, b"/v1/completions", b"{}"))
    assert await wait_until(lambda: sum(t.requests() for t in network.transports) == before + 1)
    (conn,) = [t for t in network.transports if t.closed_how is None and t.protocol.response is not None
               and t.protocol.response.phase is Phase.SENT]
    return task, conn


async def _roundtrip(network: FakeNetwork, pool: Http1Pool, *reads: bytes) -> tuple[Response, bytes, FakeTransport]:
    task, conn = await _sent(network, pool)
    conn.feed(*reads)
    resp = await asyncio.wait_for(task, 10)
    return resp, await asyncio.wait_for(resp.read(), 10), conn


async def test_an_answer_split_at_every_byte_parses_as_a_whole(network, pool):
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Long-Header: " + b"v" * 100 + b"\r\nContent-Length: 5\r\n\r\nhello"
    resp, body, _ = await _roundtrip(network, pool, *(answer[i:i + 1] for i in range(len(answer))))
    assert (resp.status, resp.content_type, resp.header("x-long-header"), body) == (200, "text/plain", "v" * 100, b"hello")
    resp.release()


async def test_a_content_length_body_in_pieces_is_whole_and_the_connection_is_kept(network, pool):
    resp, body, conn = await _roundtrip(network, pool, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", b"56", b"789")
    assert body == b"0123456789"
    resp.release()
    resp, body, again = await _roundtrip(network, pool, OK)
    resp.release()
    assert again is conn and conn.requests() == 2 and pool.connections_opened == 1


async def test_a_chunked_body_with_trailers_is_whole_and_trailers_are_not_headers(network, pool):
    resp, body, conn = await _roundtrip(
        network, pool,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"6\r\ndata: \r\n", b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n")
    assert (body, resp.content_type, resp.header("x-checksum")) == (b"data: abc", "text/event-stream", "")
    resp.release()
    assert conn.protocol.state is ConnState.IDLE


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_answers_complete_at_their_headers(network, pool, status):
    # a 304 may carry the Content-Length the body would have had (RFC 9110 section 8.6)
    resp, body, conn = await _roundtrip(network, pool, b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
    assert (resp.status, body) == (status, b"")
    resp.release()
    assert conn.protocol.state is ConnState.IDLE and conn.closed_how is None


async def test_an_answer_framed_by_the_connection_closing_ends_there_and_is_not_reused(network, pool):
    task, conn = await _sent(network, pool)
    conn.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ", b"world")
    resp = await asyncio.wait_for(task, 10)
    assert resp.phase is Phase.BODY_EOF
    conn.hang_up()
    assert await asyncio.wait_for(resp.read(), 10) == b"hello world"
    resp.release()
    resp, _, again = await _roundtrip(network, pool, OK)
    resp.release()
    assert again is not conn and pool.connections_opened == 2


async def test_connection_close_answers_are_not_reused_and_the_connection_is_closed(network, pool):
    resp, body, conn = await _roundtrip(network, pool, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    assert body == b"ok" and conn.closed_how == "close"  # graceful: every byte was in
    resp.release()
    resp, _, again = await _roundtrip(network, pool, OK)
    resp.release()
    assert again is not conn


async def test_an_idle_connection_older_than_keepalive_is_closed_not_reused(network):
    pool = Http1Pool(limit=4, keepalive_timeout=60)
    resp, _, conn = await _roundtrip(network, pool, OK)
    resp.release()
    resp, _, again = await _roundtrip(network, pool, OK)
    resp.release()
    assert again is conn  # within keep-alive: reused
    conn.protocol.idle_since -= 61  # as if it had been idle for 61 s
    resp, _, fresh = await _roundtrip(network, pool, OK)
    resp.release()
    assert fresh is not conn and conn.closed_how == "close" and conn.protocol.state is ConnState.CLOSED
    await pool.close()


async def test_the_host_header_of_an_ipv6_instance_is_bracketed(network, pool):
    task, conn = await _sent(network, pool, host="::1")
    assert bytes(conn.written).startswith(b"POST /v1/completions HTTP/1.1\r\nHost: [::1]:8000\r\n")
    assert bytes(conn.written).endswith(b"\r\nContent-Length: 2\r\n\r\n{}")
    conn.feed(OK)
    (await task).close()


async def test_an_answer_nobody_asked_for_closes_the_idle_connection(network, pool):
    resp, _, conn = await _roundtrip(network, pool, OK)
    resp.release()
    conn.feed(OK)  # a second answer to the one request
    assert conn.closed_how == "abort" and conn.protocol.state is ConnState.CLOSED
    assert "idle={}" in repr(pool)
    resp, _, again = await _roundtrip(network, pool, OK)
    resp.release()
    assert again is not conn


async def test_a_second_answer_in_the_same_read_keeps_the_first_and_closes_the_connection(network, pool):
    resp, body, conn = await _roundtrip(network, pool, OK + OK)
    assert (resp.status, body) == (200, b"{}")
    resp.release()
    assert conn.closed_how == "abort"


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
async def test_a_malformed_answer_is_a_broken_response_and_its_connection_is_aborted(network, pool, answer):
    task, conn = await _sent(network, pool)
    conn.feed(answer)
    with pytest.raises(ResponseBroken, match="invalid HTTP"):
        await asyncio.wait_for(task, 10)
    assert conn.closed_how == "abort" and pool.acquired == 0


async def test_101_switching_protocols_is_a_broken_response(network, pool):
    task, conn = await _sent(network, pool)
    conn.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    with pytest.raises(ResponseBroken, match="101"):
        await asyncio.wait_for(task, 10)
    assert conn.closed_how == "abort"


async def test_a_body_cut_short_by_the_instance_is_a_broken_response(network, pool):
    task, conn = await _sent(network, pool)
    conn.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    resp = await asyncio.wait_for(task, 10)
    conn.hang_up()
    with pytest.raises(ResponseBroken, match="before the answer was complete"):
        await asyncio.wait_for(resp.read(), 10)
    resp.close()


async def test_a_reused_connection_closed_before_any_answer_byte_is_retried_once(network, pool):
    resp, _, conn = await _roundtrip(network, pool, OK)
    resp.release()
    task, again = await _sent(network, pool)
    assert again is conn
    conn.hang_up()  # the instance had closed it while idle: no byte of this answer came
    assert await wait_until(lambda: len(network.transports) == 2 and network.last.requests() == 1)
    network.last.feed(OK)
    resp = await asyncio.wait_for(task, 10)
    assert resp.status == 200
    resp.release()


async def test_a_reused_connection_closed_after_part_of_the_answer_is_not_retried(network, pool):
    resp, _, conn = await _roundtrip(network, pool, OK)
    resp.release()
    task, _ = await _sent(network, pool)
    conn.feed(b"HTTP/1.1 200 O")  # the instance got the request: retrying could run it twice
    conn.hang_up()
    with pytest.raises(ResponseBroken) as info:
        await asyncio.wait_for(task, 10)
    assert not isinstance(info.value, NoAnswer) and len(network.transports) == 1


async def test_a_fresh_connection_closed_before_any_answer_byte_is_not_retried(network, pool):
    task, conn = await _sent(network, pool)
    conn.hang_up()
    with pytest.raises(NoAnswer):
        await asyncio.wait_for(task, 10)
    assert len(network.transports) == 1


async def test_reading_pauses_above_the_high_water_mark_and_resumes_when_read(network, pool):
    task, conn = await _sent(network, pool)
    big = 1024 * 1024
    conn.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % big)
    resp = await asyncio.wait_for(task, 10)
    conn.feed(b"x" * (big // 2))
    assert not conn.reading  # a client that does not read slows the instance down
    chunks = resp.iter_chunks()
    assert len(await anext(chunks)) == big // 2
    assert conn.reading
    conn.feed(b"y" * (big // 2))
    assert await anext(chunks) == b"y" * (big // 2)
    assert await anext(chunks, None) is None
    resp.release()


async def test_reprs_say_what_the_pool_and_a_connection_are_doing(network):
    pool = Http1Pool(limit=4, limit_per_host=2)
    resp, _, conn = await _roundtrip(network, pool, OK)
    assert repr(pool) == "<Http1Pool limit=4 limit_per_host=2 acquired=1 idle={} waiting=0>"
    assert repr(conn.protocol) == "<Connection 10.0.0.5:8000 active served=1 answer=complete>"
    resp.release()
    assert repr(pool) == "<Http1Pool limit=4 limit_per_host=2 acquired=0 idle={('10.0.0.5', 8000): 1} waiting=0>"
    assert repr(conn.protocol) == "<Connection 10.0.0.5:8000 idle served=1>"
    await pool.close()
    assert repr(pool).endswith("closed>")


# -- the tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(ConnState.CLOSED, ConnState.ACTIVE), (ConnState.IDLE, ConnState.NEW),
                                          (ConnState.NEW, ConnState.IDLE), (ConnState.ACTIVE, ConnState.NEW)])
def test_a_connection_transition_the_table_does_not_allow_raises(old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
        check_conn_transition(old, new)


@pytest.mark.parametrize(("phase", "event"), [(Phase.COMPLETE, Event.BEGIN), (Phase.BODY, Event.HEADERS),
                                              (Phase.SENT, Event.HEADERS), (Phase.SETTLED, Event.SETTLE)])
def test_an_answer_event_the_table_does_not_allow_raises(phase, event):
    with pytest.raises(IllegalTransition):
        next_phase(phase, event)


def test_every_unfinished_phase_ends_in_a_final_one_when_the_connection_closes():
    # nothing hangs: whatever phase an answer is in, the instance closing settles it
    for phase in Phase:
        if phase is not Phase.SETTLED:
            assert next_phase(phase, Event.EOF) in (Phase.COMPLETE, Phase.FAILED)
            assert next_phase(phase, Event.FAIL) in (Phase.COMPLETE, Phase.FAILED)
            assert next_phase(phase, Event.SETTLE) is Phase.SETTLED
