"""Registration as current FastDeploy engines do it: 5 s heartbeats with version, is_paused and
connected_decodes, and GET /decode_instances for prefill instances to pre-connect."""

from __future__ import annotations

import asyncio

import pytest

from ..conftest import wait_until


async def registered(c) -> list[dict]:
    async with c.http.get(c.url + "/registered") as resp:
        return (await resp.json())["instances"]


async def test_register_accepts_and_shows_the_heartbeat_fields(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=1)
    (p,), (d,) = c.prefill, c.decode
    decode_entry = {"host_ip": "127.0.0.1", "port": str(d.port), "role": "DECODE"}
    resp = await c.register(p, version="v2", is_paused=False, connected_decodes=[decode_entry])
    assert resp.status == 200
    [entry] = [e for e in await registered(c) if e["role"] == "prefill"]
    assert entry["version"] == "v2" and entry["is_paused"] is False
    assert entry["connected_decodes"] == [decode_entry]


@pytest.mark.parametrize(("field", "value"), [
    ("version", 2), ("is_paused", "yes"), ("is_paused", 1), ("connected_decodes", {"a": 1}),
    ("connected_decodes", ["http://d"]),
])
async def test_a_heartbeat_field_of_the_wrong_type_is_a_400_naming_it(cluster, field, value):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/register", json=c.backends[0].register_info(**{field: value})) as resp:
        assert resp.status == 400
        assert f"'{field}'" in (await resp.json())["error"]["message"]


async def test_a_paused_instance_gets_no_new_requests_and_finishes_the_ones_it_has(cluster):
    c = await cluster(mixed=2)
    a, b = c.backends
    a.behavior.gate = asyncio.Event()
    running = asyncio.create_task(c.chat())  # request_num: goes to the first registered, a
    assert await wait_until(lambda: a.requests_in_flight == 1)
    assert (await c.register(a, is_paused=True)).status == 200
    for _ in range(4):
        status, _ = await c.chat()
        assert status == 200
    assert b.requests_total == 4 and a.requests_total == 1
    a.behavior.gate.set()
    status, answer = await running
    assert status == 200 and answer["choices"][0]["finish_reason"] == "length"
    [entry] = [e for e in await registered(c) if e["url"] == a.url]
    assert entry["is_paused"] is True
    assert (await c.register(a, is_paused=False)).status == 200
    status, _ = await c.chat()
    assert status == 200 and a.requests_total == 2  # back in rotation


async def test_with_every_instance_paused_requests_get_a_503(cluster):
    c = await cluster(mixed=1)
    assert (await c.register(c.backends[0], is_paused=True)).status == 200
    status, answer = await c.chat()
    assert status == 503 and answer["error"]["code"] == "no_healthy_instance"


async def test_a_heartbeat_from_a_healthy_instance_is_not_probed_but_updates_the_entry(cluster):
    c = await cluster(mixed=1, health_check_interval_secs=3600)
    backend = c.backends[0]
    probes = backend.health_checks  # the registration's own probe
    for i in range(5):
        assert (await c.register(backend, version=f"v{i}")).status == 200
    assert backend.health_checks == probes
    [entry] = await registered(c)
    assert entry["version"] == "v4"


async def test_a_registration_of_an_unhealthy_instance_is_probed_and_brings_it_back(cluster):
    c = await cluster(mixed=1, health_check_interval_secs=3600, health_failure_threshold=1,
                      health_success_threshold=1)
    backend = c.backends[0]
    state = c.server.router.registry.all()[0]
    c.server.router.registry.observe(state, False)  # a failed health round
    probes = backend.health_checks
    assert (await c.register(backend)).status == 200
    assert backend.health_checks == probes + 1
    assert state.health.state.routable


async def test_decode_instances_lists_healthy_decodes_as_fastdeploy_does_filtered_by_version(cluster):
    c = await cluster(splitwise=True, prefill=1, decode=2)
    d1, d2 = c.decode
    await c.register(d1, version="v1")
    await c.register(d2, version="v2")
    async with c.http.get(c.url + "/decode_instances", params={"version": "v2"}) as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert listed == [{
        "role": "DECODE", "host_ip": "127.0.0.1", "port": str(d2.port), "metrics_port": str(d2.port),
        "connector_port": str(d2.port + 1), "engine_worker_queue_port": str(d2.port + 2),
        "transfer_protocol": ["ipc", "rdma"], "rdma_ports": [str(d2.port + 3)], "device_ids": ["0"], "tp_size": 1,
        "version": "v2",
    }]
    async with c.http.get(c.url + "/decode_instances") as resp:
        assert sorted(e["port"] for e in await resp.json()) == sorted([str(d1.port), str(d2.port)])
    state = c.server.router.registry.all()[1]
    for _ in range(3):
        c.server.router.registry.observe(state, False)  # d1 fails its health checks
    async with c.http.get(c.url + "/decode_instances") as resp:
        assert [e["port"] for e in await resp.json()] == [str(d2.port)]


async def test_decode_instances_of_a_mixed_router_is_an_empty_list(cluster):
    c = await cluster(mixed=1)
    async with c.http.get(c.url + "/decode_instances") as resp:
        assert resp.status == 200 and await resp.json() == []
