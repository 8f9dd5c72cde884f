"""Cancelling a request at every await of the generation pool leaks no slot, count or connection.

Like httpcore's tests/test_cancellations.py: a request is cancelled while connecting, while
waiting for a slot, while waiting for the answer's headers; each time the pool must end with
nothing acquired, nobody waiting, and the connection (if any) closed.
"""

from __future__ import annotations

import asyncio

import pytest

from fdrouter.generation_pool import ConnectError, Http1Pool, Response
from fdrouter.generation_state import ConnState
from fdrouter.testing import MockBehavior

from .conftest import wait_until
from .generation_pool_fakes import FakeNetwork

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
async def network(monkeypatch) -> FakeNetwork:
    return FakeNetwork().install(asyncio.get_running_loop(), monkeypatch)


def _post(pool: Http1Pool, host: str = "10.0.0.5") -> asyncio.Task[Response]:
    return asyncio.create_task(pool.post(host, 8000, b"/v1/completions", b"{}"))


async def _cancelled(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


def _waiting(pool: Http1Pool) -> int:
    return sum(len(queue) for queue in pool._waiters.values())


@pytest.mark.parametrize("stage", ["syn", "made"])
async def test_cancelled_while_connecting_holds_no_slot_and_leaves_no_connection(network, stage):
    pool = Http1Pool(limit=1)
    network.connect_hangs = stage
    task = _post(pool)
    assert await wait_until(lambda: network.pending_connects == 1)
    assert pool.acquired == 1  # a connection being opened holds its slot
    await _cancelled(task)
    assert (pool.acquired, network.pending_connects, network.transports, pool._all) == (0, 0, [], set())
    if stage == "made":  # the half-made connection was closed, and its protocol knows it
        (half,) = network.abandoned
        assert await wait_until(lambda: half.protocol.state is ConnState.CLOSED)
    network.connect_hangs = None
    task = _post(pool)  # the one slot is free again
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    network.last.feed(OK)
    (await asyncio.wait_for(task, 10)).release()
    assert pool.acquired == 0
    await pool.close()


async def test_a_connect_that_times_out_is_a_connect_error_and_frees_its_slot(network):
    pool = Http1Pool(limit=1, connect_timeout=0.05)
    network.connect_hangs = "syn"
    with pytest.raises(ConnectError, match="timed out"):
        await asyncio.wait_for(pool.post("10.0.0.5", 8000, b"/", b"{}"), 10)
    assert pool.acquired == 0 and network.pending_connects == 0
    await pool.close()


async def test_cancelled_while_waiting_for_a_slot_takes_nothing(network):
    pool = Http1Pool(limit=1)
    first = _post(pool)
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    second = _post(pool)
    assert await wait_until(lambda: _waiting(pool) == 1)
    await _cancelled(second)
    assert (pool.acquired, _waiting(pool)) == (1, 0)
    network.last.feed(OK)
    (await asyncio.wait_for(first, 10)).release()
    assert pool.acquired == 0 and len(network.transports) == 1
    await pool.close()


async def test_cancelled_while_waiting_for_a_per_host_slot_takes_nothing(network):
    pool = Http1Pool(limit=4, limit_per_host=1)
    first = _post(pool)
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    second = _post(pool)
    assert await wait_until(lambda: _waiting(pool) == 1)
    assert pool.acquired == 1  # waiting for its host's slot, it holds no global one
    await _cancelled(second)
    network.last.feed(OK)
    (await asyncio.wait_for(first, 10)).release()
    assert (pool.acquired, _waiting(pool), pool._per_host) == (0, 0, {})
    await pool.close()


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_the_slot_on(network):
    pool = Http1Pool(limit=1)
    first = _post(pool)
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    second = _post(pool)
    assert await wait_until(lambda: _waiting(pool) == 1)
    third = _post(pool)
    assert await wait_until(lambda: _waiting(pool) == 2)
    network.last.feed(OK)
    resp = await asyncio.wait_for(first, 10)
    await resp.read()
    resp.release()  # hands the slot to `second`, which has not run yet ...
    second.cancel()  # ... and is cancelled before it can
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await wait_until(lambda: network.last.requests() == 2)  # `third` got the slot (and the connection)
    network.last.feed(OK)
    (await asyncio.wait_for(third, 10)).release()
    assert (pool.acquired, _waiting(pool)) == (0, 0)
    await pool.close()


async def test_cancelled_while_waiting_for_headers_closes_the_connection(mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    pool = Http1Pool(limit=4)
    task = asyncio.create_task(pool.post(backend.host, backend.port, b"/v1/completions", b"{}"))
    assert await backend.wait_for(lambda b: b.requests_in_flight == 1)
    (conn,) = pool._all
    await _cancelled(task)
    assert pool.acquired == 0 and conn.state is ConnState.CLOSED and not pool._all
    assert await backend.wait_for(lambda b: b.disconnects == 1)  # the instance sees the client leave
    await pool.close()


async def test_slots_go_to_waiters_in_arrival_order_across_hosts(network):
    pool = Http1Pool(limit=1, limit_per_host=1)
    holder = _post(pool, "10.0.0.1")
    assert await wait_until(lambda: len(network.transports) == 1)
    tasks = []
    for n, host in enumerate(("10.0.0.2", "10.0.0.3", "10.0.0.2"), 1):
        tasks.append(_post(pool, host))
        assert await wait_until(lambda n=n: _waiting(pool) == n)
    network.last.feed(OK)
    (await asyncio.wait_for(holder, 10)).release()
    for i, task in enumerate(tasks):
        assert await wait_until(lambda i=i: len(network.transports) == i + 2 and network.last.requests() == 1)
        assert network.last.protocol.key[0] == ("10.0.0.2", "10.0.0.3", "10.0.0.2")[i]
        network.last.feed(OK)
        (await asyncio.wait_for(task, 10)).release()
    assert pool.acquired == 0
    await pool.close()


async def test_closing_the_pool_wakes_every_waiter_and_frees_every_slot(network):
    pool = Http1Pool(limit=1)
    lent = _post(pool)
    assert await wait_until(lambda: network.transports and network.last.requests() == 1)
    waiting = [_post(pool) for _ in range(3)]
    assert await wait_until(lambda: _waiting(pool) == 3)
    await pool.close()
    results = await asyncio.wait_for(asyncio.gather(lent, *waiting, return_exceptions=True), 10)
    assert [type(r).__name__ for r in results] == ["ResponseBroken"] + ["RuntimeError"] * 3
    assert (pool.acquired, _waiting(pool)) == (0, 0) and network.last.closed_how == "abort"
