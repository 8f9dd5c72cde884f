"""The circuit breaker on live traffic: opens at once, half-opens after the cooldown, closes again."""

from __future__ import annotations

from ..conftest import wait_until

# The cooldown in the half-open tests: "still open" is checked a few ms after the circuit opened,
# so 1 s leaves a loaded machine plenty of room; "half-open" is waited for, not slept into.
COOLDOWN = 1.0


async def _circuit(c, backend) -> str:
    async with c.http.get(c.url + "/registered") as resp:
        instances = (await resp.json())["instances"]
    return next(i["circuit"] for i in instances if i["url"] == backend.url)


async def _half_open(c, backend) -> bool:
    return await _circuit(c, backend) == "half_open"


async def test_failures_open_the_circuit_before_any_health_check(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=2, breaker_cooldown_secs=30,
                      disable_retries=True, health_check_interval_secs=60)
    bad, good = c.backends
    bad.behavior.fail_status = 504
    statuses = [(await c.chat())[0] for _ in range(4)]
    assert statuses.count(504) == 2
    assert await _circuit(c, bad) == "open"
    bad.reset_stats()
    for _ in range(6):
        assert (await c.chat())[0] == 200
    assert bad.requests_total == 0  # out of rotation while open


async def test_open_circuit_half_opens_after_cooldown_and_closes_after_successes(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_success_threshold=2,
                      breaker_cooldown_secs=COOLDOWN, disable_retries=True, health_check_interval_secs=60)
    bad, _ = c.backends
    bad.behavior.fail_status = 504
    while (await c.chat())[0] != 504:
        pass
    assert await _circuit(c, bad) == "open"
    bad.behavior.fail_status = None  # it recovers
    assert await wait_until(lambda: _half_open(c, bad), interval=0.05)
    for _ in range(6):
        assert (await c.chat())[0] == 200
    assert await _circuit(c, bad) == "closed"
    assert bad.requests_total >= 2


async def test_a_failed_trial_reopens_the_circuit(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_cooldown_secs=COOLDOWN,
                      disable_retries=True, health_check_interval_secs=60)
    bad, _ = c.backends
    bad.behavior.fail_status = 504
    while (await c.chat())[0] != 504:
        pass
    assert await wait_until(lambda: _half_open(c, bad), interval=0.05)
    bad.reset_stats()
    # these four take a few ms, well inside the new cooldown: a second trial cannot come in between
    statuses = [(await c.chat())[0] for _ in range(4)]
    assert bad.requests_total == 1 and statuses.count(504) == 1  # one trial, it failed
    assert await _circuit(c, bad) == "open"


async def test_circuit_state_is_exported_as_a_metric(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_cooldown_secs=30,
                      disable_retries=True)
    bad, _ = c.backends
    bad.behavior.fail_status = 504
    while (await c.chat())[0] != 504:
        pass
    async with c.http.get(c.url + "/metrics") as resp:
        text = await resp.text()
    line = next(x for x in text.splitlines() if x.startswith("fdrouter_instance_circuit_state") and bad.url in x)
    assert float(line.rsplit(" ", 1)[1]) == 2.0  # 2 = open


async def test_one_clients_requests_that_make_an_instance_answer_500_do_not_open_its_circuit(cluster):
    # a 500 is usually the request's own fault (a body the engine chokes on): five of them from one
    # client must not take the instance away from everyone for the cooldown
    c = await cluster(mixed=1, breaker_failure_threshold=2, breaker_cooldown_secs=30, disable_retries=True,
                      health_check_interval_secs=60)
    backend = c.backends[0]
    backend.behavior.fail_status = 500
    assert [(await c.chat("poison"))[0] for _ in range(5)] == [500] * 5
    assert await _circuit(c, backend) == "closed"
    backend.behavior.fail_status = None
    assert (await c.chat("a normal request"))[0] == 200


async def test_a_500_answer_asks_for_a_health_probe_that_takes_a_sick_instance_out(cluster):
    c = await cluster(mixed=2, policy="round_robin", health_failure_threshold=1, disable_retries=True,
                      health_check_interval_secs=3600)  # no scheduled round will come
    sick, _ = c.backends
    sick.behavior.fail_status = 500
    sick.behavior.health_status = 500  # really sick: its health endpoint agrees
    while (await c.chat())[0] != 500:
        pass
    router = c.server.router
    assert await wait_until(lambda: not router.registry.all()[0].health.state.routable)
    sick.reset_stats()
    assert [(await c.chat())[0] for _ in range(4)] == [200] * 4
    assert sick.requests_total == 0


async def test_a_half_open_trial_succeeds_at_its_first_byte_so_the_next_streams_need_not_wait_for_it(cluster):
    c = await cluster(mixed=1, breaker_failure_threshold=1, breaker_success_threshold=2,
                      breaker_cooldown_secs=COOLDOWN, disable_retries=True, health_check_interval_secs=60)
    backend = c.backends[0]
    backend.behavior.fail_status = 504
    while (await c.chat())[0] != 504:
        pass
    backend.behavior.fail_status = None
    backend.behavior.token_delay = 0.2  # each stream of 16 tokens takes ~3 s
    assert await wait_until(lambda: _half_open(c, backend), interval=0.05)
    streams = []
    try:
        for _ in range(3):  # each starts once the previous one's first byte is in, long before it ends
            payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            resp = await c.http.post(c.url + "/v1/chat/completions", json=payload)
            streams.append(resp)
            assert resp.status == 200, await resp.text()
            await resp.content.readline()
        assert await _circuit(c, backend) == "closed"
    finally:
        for resp in streams:
            resp.close()


async def test_a_successful_health_probe_ends_the_cooldown_early(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_cooldown_secs=600,
                      disable_retries=True, health_check_interval_secs=0.1)
    bad, _ = c.backends
    bad.behavior.fail_status = 504  # generation fails, health stays fine
    while (await c.chat())[0] != 504:
        pass
    bad.behavior.fail_status = None
    # the cooldown is 10 minutes; the next health round (0.1 s) is what half-opens the circuit
    assert await wait_until(lambda: _half_open(c, bad), timeout=10, interval=0.05)
