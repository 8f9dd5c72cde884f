"""The router's KV-event subscriber against mock backends: the index follows the instances' caches."""

from __future__ import annotations

import logging

from fdrouter.testing import MockBackend, wait_until
from fdrouter.testing.mock_cluster import Cluster

PROMPTS = [f"tenant {t} system prompt, long enough for several blocks. " * 6 for t in range(4)]


async def _kv_cluster(cluster, mixed: int = 2, **config) -> Cluster:
    config.setdefault("kv_events_retry_secs", 0.05)
    c = await cluster(mixed=mixed, policy="kv_events", **config)
    streams = c.server.router.kv_subscriber.streams
    # every stream has applied its first snapshot: from here on each change arrives as a batch
    assert await wait_until(lambda: len(streams()) == mixed and all(s.seq is not None for s in streams().values()))
    return c


def _index(c: Cluster):
    return next(iter(c.server.router.policies.values())).kv_index


def _synced(c: Cluster) -> bool:
    index = _index(c)
    return all(index.blocks_of(b.url) == set(b.prefix_cache.keys()) for b in c.backends)


async def test_after_a_few_requests_the_routers_index_is_what_the_mocks_cache(cluster):
    c = await _kv_cluster(cluster)
    for i in range(12):
        assert (await c.chat(PROMPTS[i % 4] + f"question {i}"))[0] == 200
    assert await wait_until(lambda: _synced(c))
    assert sum(len(b.prefix_cache) for b in c.backends) > 0


async def test_the_streams_hold_control_lane_places_and_no_generation_connection(cluster):
    c = await _kv_cluster(cluster, mixed=3)
    router = c.server.router
    assert await wait_until(lambda: router.upstream.control.in_use("kv_events") == 3)
    assert router.upstream.acquired_connections() == 0


async def test_a_restarted_instance_loses_its_blocks_and_reports_its_new_ones(cluster):
    c = await _kv_cluster(cluster, mixed=1)
    old = c.backends[0]
    assert (await c.chat(PROMPTS[0]))[0] == 200
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)
    stream = c.server.router.kv_subscriber.streams()[old.url]
    await old.close()
    async with MockBackend(port=old.port) as new:  # the same instance, a new process: a new epoch
        assert await wait_until(lambda: stream.epoch == new.kv_events.epoch)
        assert _index(c).blocks_of(old.url) == set()
        assert (await c.chat(PROMPTS[1]))[0] == 200
        assert await wait_until(lambda: _index(c).blocks_of(new.url) == set(new.prefix_cache.keys()) != set())


async def test_a_gap_in_the_sequence_triggers_a_resync_that_ends_with_the_right_index(cluster):
    c = await _kv_cluster(cluster, mixed=1)
    backend = c.backends[0]
    stream = c.server.router.kv_subscriber.streams()[backend.url]
    backend.kv_events.skip()  # a batch the router will never see
    assert (await c.chat(PROMPTS[0]))[0] == 200
    assert await wait_until(lambda: stream.resyncs == 1)
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)
    assert backend.kv_events.snapshots == 2  # the first subscription's, and the resync's


async def test_a_malformed_line_triggers_a_resync_and_the_subscriber_goes_on(cluster):
    c = await _kv_cluster(cluster, mixed=1)
    backend = c.backends[0]
    stream = c.server.router.kv_subscriber.streams()[backend.url]
    backend.kv_events.inject(b"\x00 not json at all")
    assert await wait_until(lambda: stream.resyncs == 1)
    assert (await c.chat(PROMPTS[2]))[0] == 200
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)


async def test_a_stream_that_went_quiet_is_reopened_with_its_cursor_not_from_a_snapshot(cluster):
    c = await _kv_cluster(cluster, mixed=1, kv_events_idle_timeout_secs=0.2)
    backend = c.backends[0]
    backend.kv_events.heartbeat = 30.0  # no pings: the router's idle timeout fires
    subscriptions = backend.kv_events.subscriptions
    assert await wait_until(lambda: backend.kv_events.subscriptions >= subscriptions + 2)
    assert backend.kv_events.snapshots == 1
    assert (await c.chat(PROMPTS[3]))[0] == 200
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)


async def test_deregistration_drops_the_instance_from_the_index_and_closes_its_stream(cluster):
    c = await _kv_cluster(cluster)
    gone = c.backends[0]
    for prompt in PROMPTS:
        assert (await c.chat(prompt))[0] == 200
    router = c.server.router
    async with c.http.post(c.url + "/deregister", json={"host_ip": gone.host, "port": gone.port}) as resp:
        assert resp.status == 200
    assert gone.url not in _index(c).instances()  # at once: the policy forgot it
    assert await wait_until(lambda: gone.url not in router.kv_subscriber.streams())
    assert await wait_until(lambda: router.upstream.control.in_use("kv_events") == 1)
    assert gone.url not in _index(c).instances()


async def test_an_unhealthy_instance_loses_its_blocks_until_it_is_back_and_resynced(cluster):
    c = await _kv_cluster(cluster, mixed=1, health_check_interval_secs=0.05, health_failure_threshold=1,
                          health_success_threshold=1)
    backend = c.backends[0]
    assert (await c.chat(PROMPTS[0]))[0] == 200
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)
    backend.behavior.health_status = 503
    assert await wait_until(lambda: _index(c).blocks_of(backend.url) == set())
    backend.behavior.health_status = 200
    assert await wait_until(lambda: _synced(c) and len(_index(c)) > 0)


async def test_an_instance_keying_other_blocks_is_not_indexed(cluster):
    c = await cluster(mixed=1, policy="kv_events", kv_events_retry_secs=0.05, policy_options={"block_tokens": 32})
    backend = c.backends[0]
    assert await wait_until(lambda: backend.kv_events.subscriptions >= 1)
    assert (await c.chat(PROMPTS[0]))[0] == 200
    assert len(backend.prefix_cache) > 0
    assert _index(c).blocks_of(backend.url) == set()
    assert c.server.router.kv_subscriber.streams()[backend.url].epoch is None


async def test_an_instance_that_went_away_is_logged_once_loudly_then_retried_quietly(cluster, caplog):
    c = await _kv_cluster(cluster, mixed=1, health_check_interval_secs=60)
    backend = c.backends[0]
    stream = c.server.router.kv_subscriber.streams()[backend.url]
    caplog.set_level(logging.DEBUG, logger="fdrouter.kv_events.subscriber")
    await backend.close()
    assert await wait_until(lambda: sum(backend.url in r.getMessage() for r in caplog.records) >= 4)
    loud = [r for r in caplog.records if backend.url in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(loud) == 1
    assert stream.seq is not None  # the cursor is kept for when it comes back


async def test_in_splitwise_only_the_role_whose_policy_needs_events_is_subscribed(cluster):
    c = await cluster(prefill=2, decode=1, splitwise=True, prefill_policy="kv_events", kv_events_retry_secs=0.05)
    router = c.server.router
    assert await wait_until(lambda: set(router.kv_subscriber.streams()) == {b.url for b in c.prefill})
    index = router.policies[next(r for r in router.policies if r.value == "prefill")].kv_index
    for prompt in PROMPTS:
        assert (await c.chat(prompt))[0] == 200
    assert await wait_until(lambda: all(index.blocks_of(b.url) == set(b.prefix_cache.keys()) for b in c.prefill))
    assert sum(len(b.prefix_cache) for b in c.prefill) > 0
    assert c.decode[0].kv_events.subscriptions == 0
