"""The generation pool's three timeouts (total, first byte, idle), which share one timer per answer.

The timeouts here are 50 ms: short enough to fire quickly, and every test waits for them with
a bound far longer, so a loaded machine makes the tests slower, never wrong.
"""

from __future__ import annotations

import asyncio

import pytest

from fdrouter.generation_pool import Http1Pool, Response, ResponseTimeout

from .conftest import wait_until
from .generation_pool_fakes import FakeNetwork

SHORT = 0.05
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


@pytest.fixture
async def network(monkeypatch) -> FakeNetwork:
    return FakeNetwork().install(asyncio.get_running_loop(), monkeypatch)


async def _sent(network: FakeNetwork, pool: Http1Pool) -> asyncio.Task[Response]:
    task = asyncio.create_task(pool.post("10.0.0.5", 8000, b"/v1/completions", b"{}"))
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    return task


async def _time_passes(seconds: float) -> None:
    """Let ``seconds`` of loop time go by: the behaviour under test is what a wait that long does."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(end - loop.time())


@pytest.mark.parametrize(("kind", "timeouts"), [
    ("first_byte", dict(first_byte_timeout=SHORT)),
    ("first_byte", dict(first_byte_timeout=SHORT, total_timeout=30)),
    ("total", dict(total_timeout=SHORT, first_byte_timeout=30)),
    ("idle", dict(idle_timeout=SHORT)),
    ("idle", dict(idle_timeout=SHORT, total_timeout=30, first_byte_timeout=30)),
    ("total", dict(idle_timeout=30, total_timeout=SHORT)),
])
async def test_the_timeout_due_first_fails_the_answer_aborts_the_connection_and_frees_the_slot(network, kind, timeouts):
    pool = Http1Pool(limit=1, **timeouts)
    task = await _sent(network, pool)
    resp = None
    if "first_byte_timeout" not in timeouts or timeouts["first_byte_timeout"] > SHORT:
        network.last.feed(HEAD + b"ab")  # the headers are in: the wait is for the body
        resp = await asyncio.wait_for(task, 10)
        task = asyncio.create_task(resp.read())
    with pytest.raises(ResponseTimeout) as info:
        await asyncio.wait_for(task, 10)
    assert info.value.kind == kind and network.last.closed_how == "abort"
    if resp is not None:
        resp.close()
    assert pool.acquired == 0
    await pool.close()


async def test_the_idle_timeout_counts_only_while_the_reader_waits(network):
    pool = Http1Pool(limit=1, idle_timeout=SHORT)
    task = await _sent(network, pool)
    network.last.feed(HEAD + b"ab")
    resp = await asyncio.wait_for(task, 10)
    await _time_passes(4 * SHORT)  # a slow client, not a silent instance
    chunks = resp.iter_chunks()
    assert await anext(chunks) == b"ab"
    network.last.feed(b"cde")
    assert await anext(chunks) == b"cde"
    assert await anext(chunks, None) is None
    resp.release()
    assert pool.acquired == 0
    await pool.close()


async def test_a_first_byte_timeout_does_not_fire_once_the_headers_are_in(network):
    pool = Http1Pool(limit=1, first_byte_timeout=SHORT)
    task = await _sent(network, pool)
    network.last.feed(HEAD)
    resp = await asyncio.wait_for(task, 10)
    await _time_passes(4 * SHORT)
    network.last.feed(b"hello")
    assert await asyncio.wait_for(resp.read(), 10) == b"hello"
    resp.release()
    await pool.close()
