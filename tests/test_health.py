"""The health state machine (pure) and the monitor against real mock backends."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from fdrouter.health import Health, HealthTracker

from .conftest import wait_until


def _run(tracker: HealthTracker, outcomes: str) -> list[Health]:
    return [(tracker.observe(o == "+"), tracker.state)[1] for o in outcomes]


def test_three_failures_make_an_instance_unhealthy_and_one_success_resets_the_count():
    t = HealthTracker(failure_threshold=3, success_threshold=2)
    assert _run(t, "--") == [Health.SUSPECT, Health.SUSPECT]
    assert _run(t, "+") == [Health.HEALTHY]
    assert _run(t, "---") == [Health.SUSPECT, Health.SUSPECT, Health.UNHEALTHY]


def test_two_successes_readmit_and_a_failure_while_recovering_starts_over():
    t = HealthTracker(failure_threshold=3, success_threshold=2, state=Health.UNHEALTHY)
    assert _run(t, "+-+") == [Health.RECOVERING, Health.UNHEALTHY, Health.RECOVERING]
    assert _run(t, "+") == [Health.HEALTHY]


def test_transitions_are_reported_once():
    t = HealthTracker(failure_threshold=1, success_threshold=1)
    first = t.observe(False)
    assert first is not None and (first.old, first.new) == (Health.HEALTHY, Health.UNHEALTHY)
    assert t.observe(False) is None
    assert t.observe(True).new is Health.HEALTHY
    assert t.observe(True) is None


def test_only_healthy_and_suspect_are_routable():
    assert [h for h in Health if h.routable] == [Health.HEALTHY, Health.SUSPECT]


def test_thresholds_below_one_are_rejected():
    with pytest.raises(ValueError):
        HealthTracker(failure_threshold=0, success_threshold=2)


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
    caplog.set_level(logging.INFO, logger="fdrouter.health")
    c = await cluster(mixed=1, health_check_interval_secs=0.02)
    router = c.server.router
    c.backends[0].behavior.health_status = 500
    start = router.monitor.rounds
    assert await wait_until(lambda: router.monitor.rounds >= start + 10)
    lines = [r.getMessage() for r in caplog.records if r.name == "fdrouter.health"]
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
