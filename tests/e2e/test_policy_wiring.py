"""How the router feeds policies: options, routing facts extracted only on demand, scraped metrics."""

from __future__ import annotations

import asyncio

import pytest

import fdrouter.router as router_module
from fdrouter.config import ConfigError, RouterConfig

from ..conftest import wait_until


def test_policy_options_go_to_the_policy_that_accepts_them():
    cfg = RouterConfig(policy="cache_aware", policy_options={"cache_threshold": 0.7})
    assert cfg.options_for("cache_aware") == {"cache_threshold": 0.7}


def test_a_policy_option_no_configured_policy_accepts_is_a_config_error():
    with pytest.raises(ConfigError, match="cache_threshold"):
        RouterConfig(policy="round_robin", policy_options={"cache_threshold": 0.7})


def test_splitwise_options_may_target_either_policy():
    cfg = RouterConfig(splitwise=True, prefill_policy="cache_aware", decode_policy="session_affinity",
                       policy_options={"cache_threshold": 0.2, "session_header": "x-user"})
    assert cfg.options_for("cache_aware") == {"cache_threshold": 0.2}
    assert cfg.options_for("session_affinity") == {"session_header": "x-user"}


async def test_round_robin_requests_are_never_parsed_for_prompt_text(cluster, monkeypatch):
    c = await cluster(mixed=2, policy="round_robin")

    def forbidden(body):
        raise AssertionError("prompt text extracted for a policy that does not need it")

    monkeypatch.setattr(router_module, "prompt_text", forbidden)
    for _ in range(4):
        assert (await c.chat())[0] == 200


async def test_cache_aware_gets_the_prompt_text_and_sends_a_shared_prefix_to_one_instance(cluster):
    c = await cluster(mixed=3, policy="cache_aware")
    system = "You are a meticulous assistant for the accounting team. " * 20
    for i in range(6):
        assert (await c.chat(system + f"question {i}"))[0] == 200
    served = sorted(b.requests_total for b in c.backends)
    assert served == [0, 0, 6]


async def test_session_affinity_keys_on_the_configured_header(cluster):
    c = await cluster(mixed=4, policy="session_affinity", policy_options={"session_header": "x-user"})
    payload = {"messages": [{"role": "user", "content": "hi"}]}
    for _ in range(5):
        async with c.http.post(c.url + "/v1/chat/completions", json=payload, headers={"x-user": "alice"}) as r:
            assert r.status == 200
    assert sorted(b.requests_total for b in c.backends) == [0, 0, 0, 5]


async def test_session_affinity_falls_back_to_the_body_user_field(cluster):
    c = await cluster(mixed=4, policy="session_affinity")
    for _ in range(5):
        assert (await c.chat(user="bob"))[0] == 200
    assert sorted(b.requests_total for b in c.backends) == [0, 0, 0, 5]


async def test_remote_metrics_scrapes_in_the_background_not_per_request(cluster):
    c = await cluster(mixed=2, policy="remote_metrics", metrics_scrape_interval_secs=0.05)
    registry, scraper = c.server.router.registry, c.server.router.scraper
    assert await wait_until(lambda: all(s.remote is not None for s in registry.all()))
    scrapes_before, rounds_before = sum(b.metrics_requests for b in c.backends), scraper.rounds
    for _ in range(10):
        assert (await c.chat())[0] == 200
    scrapes = sum(b.metrics_requests for b in c.backends) - scrapes_before
    rounds = scraper.rounds - rounds_before
    # ten requests cost no scrape of their own: every scrape belongs to a background round (one
    # per instance each; one round may be under way at the end), however many rounds the
    # requests took, so this holds on a slow machine too; scraping per request adds ten
    assert scraper.rounds > 0
    assert scrapes <= len(c.backends) * (rounds + 1), (scrapes, rounds)


async def test_remote_metrics_avoids_the_instance_that_reports_a_queue(cluster):
    c = await cluster(mixed=2, policy="remote_metrics", metrics_scrape_interval_secs=0.05)
    busy, idle = c.backends
    busy.behavior.gate = asyncio.Event()  # never opened: its requests run until they are cancelled
    registry = c.server.router.registry
    # three long requests go straight to the busy backend (bypassing the router)
    payload = {"messages": [{"role": "user", "content": "x"}]}
    hogs = [asyncio.create_task(c.http.post(busy.url + "/v1/chat/completions", json=payload)) for _ in range(3)]
    assert await wait_until(lambda: any(s.remote and s.remote.running >= 3 for s in registry.all()))
    idle.reset_stats()
    for _ in range(4):
        assert (await c.chat())[0] == 200
    assert idle.requests_total == 4
    for hog in hogs:
        hog.cancel()
    await asyncio.gather(*hogs, return_exceptions=True)


async def test_in_flight_load_is_visible_in_registered_and_comes_back(cluster):
    c = await cluster(mixed=1, policy="process_tokens", behavior={"output_tokens": 1})
    backend = c.backends[0]
    backend.behavior.gate = asyncio.Event()  # the request stays in flight until the gate opens
    task = asyncio.create_task(c.chat("x" * 400))

    async def registered():
        async with c.http.get(c.url + "/registered") as resp:
            return (await resp.json())["instances"][0]

    assert await wait_until(lambda: backend.requests_in_flight == 1)
    row = await registered()
    assert row["in_flight_requests"] == 1 and row["in_flight_tokens"] == 100
    backend.behavior.gate.set()
    assert (await task)[0] == 200
    row = await registered()
    assert row["in_flight_requests"] == 0 and row["in_flight_tokens"] == 0


async def test_deregistering_an_instance_drops_it_from_the_cache_aware_tree(cluster):
    c = await cluster(mixed=2, policy="cache_aware")
    for i in range(4):
        assert (await c.chat("a long shared system prompt for the tree " * 10 + str(i)))[0] == 200
    policy = c.server.router.policies[next(iter(c.server.router.policies))]
    assert policy.tree_size() > 0
    gone = next(b for b in c.backends if b.requests_total)
    async with c.http.post(c.url + "/deregister", json={"host_ip": "127.0.0.1", "port": gone.port}) as resp:
        assert resp.status == 200
    assert policy.tree_size() == 0  # every prompt had gone to that instance
