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
    bad.behavior.fail_status = 500
    statuses = [(await c.chat())[0] for _ in range(4)]
    assert statuses.count(500) == 2
    assert await _circuit(c, bad) == "open"
    bad.reset_stats()
    for _ in range(6):
        assert (await c.chat())[0] == 200
    assert bad.requests_total == 0  # out of rotation while open


async def test_open_circuit_half_opens_after_cooldown_and_closes_after_successes(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_success_threshold=2,
                      breaker_cooldown_secs=COOLDOWN, disable_retries=True, health_check_interval_secs=60)
    bad, _ = c.backends
    bad.behavior.fail_status = 500
    while (await c.chat())[0] != 500:
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
    bad.behavior.fail_status = 500
    while (await c.chat())[0] != 500:
        pass
    assert await wait_until(lambda: _half_open(c, bad), interval=0.05)
    bad.reset_stats()
    # these four take a few ms, well inside the new cooldown: a second trial cannot come in between
    statuses = [(await c.chat())[0] for _ in range(4)]
    assert bad.requests_total == 1 and statuses.count(500) == 1  # one trial, it failed
    assert await _circuit(c, bad) == "open"


async def test_circuit_state_is_exported_as_a_metric(cluster):
    c = await cluster(mixed=2, policy="round_robin", breaker_failure_threshold=1, breaker_cooldown_secs=30,
                      disable_retries=True)
    bad, _ = c.backends
    bad.behavior.fail_status = 500
    while (await c.chat())[0] != 500:
        pass
    async with c.http.get(c.url + "/metrics") as resp:
        text = await resp.text()
    line = next(x for x in text.splitlines() if x.startswith("fdrouter_instance_circuit_state") and bad.url in x)
    assert float(line.rsplit(" ", 1)[1]) == 2.0  # 2 = open
