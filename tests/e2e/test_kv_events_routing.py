"""kv_events end to end: routing on what the instances report beats guessing from past decisions."""

from __future__ import annotations

import random

import pytest

from fdrouter.sim.engine_model import EngineModel
from fdrouter.testing import MockBackend, wait_until
from fdrouter.testing.mock_cluster import Cluster

# 7 tenants, each a ~20-block system prompt; 3 instances caching 45 blocks each: two tenants per
# instance fit, six in all, one too few, so evictions happen and where each tenant goes decides the
# hit rate.
TENANTS = [f"[tenant {t}] " + f"system prompt of tenant {t}, with its rules and examples. " * 22 for t in range(7)]
SMALL_CACHE = {"engine": EngineModel(cache_blocks=45)}


def _hit_rate(c: Cluster) -> float:
    prompt = sum(b.prompt_tokens_total for b in c.backends)
    return sum(b.cached_tokens_total for b in c.backends) / prompt


def _synced(c: Cluster) -> bool:
    index = next(iter(c.server.router.policies.values())).kv_index
    return all(index.blocks_of(b.url) == set(b.prefix_cache.keys()) for b in c.backends)


async def _subscribed(c: Cluster) -> None:
    streams = c.server.router.kv_subscriber.streams
    assert await wait_until(lambda: len(streams()) == len(c.backends)
                            and all(s.seq is not None for s in streams().values()))


async def test_a_repeated_shared_prefix_workload_hits_the_cache_better_than_cache_aware(cluster):
    # One request at a time, each routed once the previous one's events are in (kv_events): the
    # outcome depends on the policies alone, not on timing. Tenants drawn with the simulator's
    # shared-prefix skew.
    rng = random.Random(7)
    weights = [1 / (k + 1) ** 0.8 for k in range(len(TENANTS))]
    prompts = [rng.choices(TENANTS, weights)[0] + f" user question {i}" for i in range(120)]
    rates = {}
    for policy in ("cache_aware", "kv_events", "round_robin"):
        c = await cluster(mixed=3, policy=policy, behavior=SMALL_CACHE, kv_events_retry_secs=0.05)
        if policy == "kv_events":
            await _subscribed(c)
        for prompt in prompts:
            assert (await c.chat(prompt, max_tokens=2))[0] == 200
            if policy == "kv_events":
                assert await wait_until(lambda: _synced(c))  # noqa: B023
        rates[policy] = _hit_rate(c)
    print(f"\ntoken hit rates on 3 mocks of 45 blocks: {rates}")
    # cache_aware sends every new tenant to the first idle instance and thrashes its cache;
    # kv_events sends it where the events say there is room, and knows what was evicted
    assert rates["kv_events"] > rates["cache_aware"] + 0.1
    assert rates["kv_events"] > rates["round_robin"]


@pytest.mark.parametrize("loss", ["restart", "cache reset"])
@pytest.mark.parametrize("policy", ["kv_events", "cache_aware"])
async def test_after_an_instance_loses_its_cache_only_kv_events_stops_sending_its_prefixes_there(
        cluster, policy, loss):
    c = await cluster(mixed=2, policy=policy, kv_events_retry_secs=0.05)
    if policy == "kv_events":
        await _subscribed(c)
    prompt = TENANTS[0]
    assert (await c.chat(prompt + " first"))[0] == 200
    home = next(b for b in c.backends if b.requests_total)
    other = next(b for b in c.backends if b is not home)
    # the other instance caches the prefix too, from a request that did not come through this router
    async with c.http.post(other.url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": prompt + " direct"}]}) as resp:
        assert resp.status == 200
    if loss == "cache reset":
        home.prefix_cache.clear()
        restarted: MockBackend | None = None
    else:
        await home.close()
        restarted = await MockBackend(port=home.port).start()
    try:
        if policy == "kv_events":
            index = next(iter(c.server.router.policies.values())).kv_index
            assert await wait_until(lambda: index.blocks_of(home.url) == set()
                                    and index.blocks_of(other.url) == set(other.prefix_cache.keys()))
        status, answer = await c.chat(prompt + " after the loss")
        assert status == 200
        served_by_other = other.requests_total == 2
        if policy == "kv_events":
            assert served_by_other  # where the prefix really is
            assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        else:
            assert not served_by_other  # cache_aware remembers its own decision: a miss
            assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    finally:
        if restarted is not None:
            await restarted.close()
