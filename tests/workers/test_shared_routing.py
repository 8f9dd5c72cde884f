"""``fdrouter serve --workers 2``: routing is the same whichever worker a request reaches.

Real processes throughout: a supervisor and two workers on one port, mock backends in this
test's event loop. Each check pins a connection to a worker (``Workers.on``) so it knows which
worker answered.
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from fdrouter.testing import MockBehavior

from ..conftest import wait_until
from .conftest import chat

pytestmark = pytest.mark.once


def _register_body(backend) -> dict:
    return {"role": "mixed", "host_ip": "127.0.0.1", "port": backend.port}


async def test_a_registration_through_one_worker_is_in_effect_in_every_worker_when_answered(
    workers, mock_backend_factory
):
    router = await workers(2)
    backend = await mock_backend_factory()
    async with router.on(0) as w0, router.on(1) as w1:
        assert (await chat(w1, router.url))[0] == 503  # nothing registered yet
        async with w0.post(router.url + "/register", json=_register_body(backend)) as resp:
            assert resp.status == 200
        # no wait: the answer above came after the shared registry had it
        assert (await chat(w1, router.url))[0] == 200
        assert (await chat(w0, router.url))[0] == 200
        async with w1.post(router.url + "/deregister", json=_register_body(backend)) as resp:
            assert resp.status == 200
        assert (await chat(w0, router.url))[0] == 503
        async with w0.get(router.url + "/registered") as resp:
            assert (await resp.json())["instances"] == []


async def test_each_instance_is_probed_once_per_interval_for_the_whole_router(workers, mock_backend_factory):
    interval = 0.2
    backend = await mock_backend_factory()
    router = await workers(2, "--worker-urls", backend.url, "--health-check-interval-secs", str(interval),
                           "--health-failure-threshold", "1")
    await asyncio.sleep(0.5)
    before, started = backend.health_checks, asyncio.get_running_loop().time()
    await asyncio.sleep(3.0)
    probes = backend.health_checks - before
    rounds = (asyncio.get_running_loop().time() - started) / interval
    # one prober for the router: ~15 probes in 3 s; a prober per worker would make ~30. The
    # margin (x1.4 and a few) absorbs rounds late on a loaded machine, never a second prober.
    assert probes <= 1.4 * rounds + 3, (probes, rounds)
    backend.behavior.health_status = 500
    for worker in (0, 1):  # the same verdict in every worker
        async with router.on(worker) as session:
            async def out_of_rotation(session=session) -> bool:
                return (await chat(session, router.url))[0] == 503
            assert await wait_until(out_of_rotation, timeout=10)


async def test_load_and_admission_are_counted_over_both_workers(workers, mock_backend_factory):
    gate = asyncio.Event()
    backend = await mock_backend_factory(behavior=MockBehavior(gate=gate))
    router = await workers(2, "--worker-urls", backend.url, "--max-concurrent-requests", "3", "--queue-size", "0")
    async with router.on(0) as w0, router.on(1) as w1, router.on(0) as w0b, router.on(1) as w1b:
        held = []
        for session in (w0, w1, w0b):  # one at a time: each is in flight before the next goes
            held.append(asyncio.ensure_future(chat(session, router.url)))
            expected = len(held)
            assert await wait_until(lambda expected=expected: backend.requests_in_flight == expected)
        status, body = await chat(w1b, router.url)  # the 4th, on the worker with only one running
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        async with router.on(0) as w0c:  # w0, w1 and w0b each carry a held request
            for session in (w0c, w1b):  # the sum over workers, from whichever answers
                async with session.get(router.url + "/registered") as resp:
                    assert (await resp.json())["instances"][0]["in_flight_requests"] == 3
        gate.set()
        assert [status for status, _ in await asyncio.gather(*held)] == [200, 200, 200]


async def test_metrics_from_any_worker_report_the_whole_router_and_survive_a_worker_restart(
    workers, mock_backend_factory
):
    backend = await mock_backend_factory()
    router = await workers(2, "--worker-urls", backend.url)

    async def requests_total(session: aiohttp.ClientSession) -> float:
        async with session.get(router.url + "/metrics") as resp:
            text = await resp.text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("fdrouter_requests_total{") and 'status="200"' in line)

    async with router.on(0) as w0, router.on(1) as w1:
        for _ in range(3):
            assert (await chat(w0, router.url))[0] == 200
            assert (await chat(w1, router.url))[0] == 200
        assert await requests_total(w0) == await requests_total(w1) == 6
    pids = await router.pids()
    os.kill(pids[0], signal.SIGKILL)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        served = 0
        for _ in range(40):  # the other worker serves while worker 0 is restarted
            try:
                status, _ = await chat(http, router.url)
            except aiohttp.ClientConnectionError:
                continue  # a connection queued on the killed worker's socket dies with it (SO_REUSEPORT)
            assert status == 200
            served += 1
            if served == 10:
                break
        assert served == 10

    async def restarted() -> bool:
        return (await router.pids()).get(0) not in (None, pids[0])

    assert await wait_until(restarted, timeout=30)
    assert "worker 0" in router.proc.log_text() and "restarting" in router.proc.log_text()
    async with router.on(0) as w0:
        assert await requests_total(w0) == 6 + served  # worker 0's counts before it died are still there


async def test_sigterm_drains_the_streams_of_every_worker_and_exits_0(workers, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(token_delay=0.1, output_tokens=15))
    router = await workers(2, "--worker-urls", backend.url, "--shutdown-grace-period-secs", "20")

    async def stream(session: aiohttp.ClientSession) -> bytes:
        payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(router.url + "/v1/chat/completions", json=payload) as resp:
            assert resp.status == 200
            return await resp.read()

    async with router.on(0) as w0, router.on(1) as w1:
        streams = [asyncio.ensure_future(stream(w0)), asyncio.ensure_future(stream(w1))]
        assert await wait_until(lambda: backend.requests_in_flight == 2)
        router.proc.signal(signal.SIGTERM)
        bodies = await asyncio.gather(*streams)
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)  # both finished, nothing cut
    assert await router.proc.wait(30) == 0
