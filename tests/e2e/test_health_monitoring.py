"""The health monitor against real mock backends: thresholds in traffic, logging, timeouts, pool separation."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from fdrouter.health_state import Health

from ..conftest import wait_until


async def test_failing_instance_is_taken_out_after_threshold_and_readmitted_on_recovery(cluster):
    c = await cluster(mixed=2, health_check_interval_secs=0.05)
    sick, well = c.backends
    router = c.server.router
    sick.behavior.health_status = 500
    assert await wait_until(lambda: router.registry.all()[0].health.state is Health.UNHEALTHY)
    for _ in range(6):  # no traffic goes to the unhealthy instance
        status, _ = await c.chat()
        assert status == 200
    assert sick.requests_total == 0 and well.requests_total == 6
    sick.behavior.health_status = 200
    assert await wait_until(lambda: router.registry.all()[0].health.state is Health.HEALTHY)


async def test_state_changes_are_logged_once_not_every_round(cluster, caplog):
    caplog.set_level(logging.INFO, logger="fdrouter.health_monitor")
    c = await cluster(mixed=1, health_check_interval_secs=0.02)
    router = c.server.router
    c.backends[0].behavior.health_status = 500
    start = router.monitor.rounds
    assert await wait_until(lambda: router.monitor.rounds >= start + 10)
    lines = [r.getMessage() for r in caplog.records if r.name == "fdrouter.health_monitor"]
    assert lines.count(f"instance {c.backends[0].url} (mixed): healthy -> suspect") == 1
    assert lines.count(f"instance {c.backends[0].url} (mixed): suspect -> unhealthy") == 1
    assert len(lines) == 2


async def test_hung_health_endpoint_times_out_per_check_without_stalling_others(cluster):
    # 0.5 s: an answered check takes a few ms, so a loaded machine's stalls (a fraction of that
    # bound) cannot time out the healthy instance's checks; the hung one answers in 30 s
    c = await cluster(mixed=2, health_check_interval_secs=0.05, health_check_timeout_secs=0.5,
                      health_failure_threshold=2)
    hung, ok = c.backends
    hung.behavior.health_delay = 30
    router = c.server.router
    assert await wait_until(lambda: router.registry.all()[0].health.state is Health.UNHEALTHY)
    before = ok.health_checks
    assert await wait_until(lambda: ok.health_checks >= before + 3)
    assert router.registry.all()[1].health.state is Health.HEALTHY


async def test_health_checks_stay_correct_while_200_slow_streams_fill_the_generation_pool(cluster):
    # a generation pool of 50 with 200 streams queued on it: a shared pool would starve health checks.
    # The streams are held at the backend until the checks are counted, so the pool stays full
    # however long that takes; a check that times out fails (2 s: it takes a few ms).
    c = await cluster(mixed=1, max_connections=50, health_check_interval_secs=0.05,
                      health_check_timeout_secs=2.0, behavior={"output_tokens": 12, "token_delay": 0.05})
    backend = c.backends[0]
    backend.behavior.gate = asyncio.Event()
    router = c.server.router
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True}

    async def stream(session: aiohttp.ClientSession) -> int:
        async with session.post(c.url + "/v1/chat/completions", json=payload) as resp:
            await resp.read()
            return resp.status

    connector = aiohttp.TCPConnector(limit=250)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        tasks = [asyncio.create_task(stream(session)) for _ in range(200)]
        assert await wait_until(lambda: backend.requests_in_flight == 50)
        rounds, checks = router.monitor.rounds, backend.health_checks
        assert await wait_until(lambda: router.monitor.rounds >= rounds + 5)
        assert backend.health_checks >= checks + 5
        assert router.registry.all()[0].health.state is Health.HEALTHY
        assert router.upstream.acquired_connections() == 50  # the pool really is saturated
        assert backend.requests_in_flight == 50  # and the other 150 still wait for it
        backend.behavior.gate.set()
        statuses = await asyncio.gather(*tasks)
    assert statuses == [200] * 200
