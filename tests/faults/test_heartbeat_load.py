"""1,000 FastDeploy engines heartbeating: each heartbeat is cheap, and health probes stay one per instance per round.

A FastDeploy engine re-posts ``/register`` every 5 s (``engine/register_manager.py``). Here 1,000
instances (one tiny aiohttp app listening on 1,000 ports) register, then heartbeat in rounds, one
a second (time compressed 5x; the router's health interval too). The router runs as its own process,
so its CPU (``/proc/PID/stat``) is its own; the number is reported, not asserted.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

INSTANCES = 1000
HEARTBEAT_ROUNDS = 6
# FastDeploy's heartbeat and fdrouter's health interval are both 5 s; compressed 5x here, so a few
# health rounds run during the heartbeats.
HEARTBEAT_SECS = 1.0
HEALTH_INTERVAL = 1.0
CONCURRENCY = 32


class Instances:
    """Many healthy instances: one app on many ports, counting the health probes per port."""

    def __init__(self) -> None:
        self.probes: collections.Counter[int] = collections.Counter()
        self.times: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
        app = web.Application()
        app.router.add_get("/health", self._health)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.ports: list[int] = []

    async def _health(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        port = request.transport.get_extra_info("sockname")[1]
        self.probes[port] += 1
        self.times[port].append(time.monotonic())
        return web.json_response({"status": "ok"})

    async def start(self, count: int) -> None:
        await self.runner.setup()
        for _ in range(count):
            await web.TCPSite(self.runner, "127.0.0.1", 0, backlog=128).start()
        self.ports = [address[1] for address in self.runner.addresses]


@pytest_asyncio.fixture
async def instances() -> AsyncIterator[Instances]:
    fleet = Instances()
    try:
        yield fleet
    finally:
        await fleet.runner.cleanup()


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, proc(5)


async def post_all(http: aiohttp.ClientSession, url: str, bodies: list[dict]) -> list[int]:
    queue = list(reversed(bodies))
    statuses: list[int] = []

    async def worker() -> None:
        while queue:
            body = queue.pop()
            async with http.post(url + "/register", json=body) as resp:
                await resp.read()
                statuses.append(resp.status)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


@pytest.mark.once
async def test_a_thousand_instances_heartbeating_cost_no_probes_and_little_cpu(spawn, instances, record_property):
    await instances.start(INSTANCES)
    router = await spawn.router("--health-check-interval-secs", str(HEALTH_INTERVAL), "--max-instances", "2000")

    def body(port: int, round_: int) -> dict:
        return {"role": "mixed", "host_ip": "127.0.0.1", "port": port, "tp_size": 1, "device_ids": ["0"],
                "version": f"v{round_}", "is_paused": False, "connected_decodes": []}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        started = time.monotonic()
        assert set(await post_all(http, router.url, [body(p, 0) for p in instances.ports])) == {200}
        registered_probes = sum(instances.probes.values())
        cpu_before = cpu_seconds(router.pid)
        started_beating = time.monotonic()
        for round_ in range(1, HEARTBEAT_ROUNDS + 1):
            round_started = time.monotonic()
            assert set(await post_all(http, router.url, [body(p, round_) for p in instances.ports])) == {200}
            await asyncio.sleep(max(0.0, HEARTBEAT_SECS - (time.monotonic() - round_started)))  # pacing, as engines do
        cpu_after = cpu_seconds(router.pid)
        elapsed = time.monotonic() - started
        probes = {port: instances.probes[port] for port in instances.ports}  # before the quiet spell below
        beating = time.monotonic() - started_beating
        async with http.get(router.url + "/registered") as resp:
            entries = (await resp.json())["instances"]
        await asyncio.sleep(beating)  # as long again without heartbeats: what the health rounds alone cost
        idle = cpu_seconds(router.pid) - cpu_after

    heartbeats = INSTANCES * HEARTBEAT_ROUNDS
    cpu = cpu_after - cpu_before
    per_heartbeat = max(0.0, cpu - idle) / heartbeats * 1e6
    print(f"\n{heartbeats} heartbeats in {beating:.1f} s: router CPU {cpu:.2f} s, {idle:.2f} s of it health rounds "
          f"and the rest (as measured over the same time without heartbeats): ~{per_heartbeat:.0f} us per heartbeat")
    record_property("router_cpu_us_per_heartbeat", round(per_heartbeat))
    assert len(entries) == INSTANCES
    assert {e["version"] for e in entries} == {f"v{HEARTBEAT_ROUNDS}"}  # every heartbeat updated its entry
    assert registered_probes >= INSTANCES  # each new instance was probed once when it registered
    # one probe at registration, then one per health round: at most elapsed / interval rounds, plus the
    # one that may be under way. Probing every heartbeat would add HEARTBEAT_ROUNDS to every instance.
    allowed = 1 + int(elapsed // HEALTH_INTERVAL) + 1
    worst = max(instances.ports, key=lambda p: probes[p])
    most = probes[worst]
    when = [round(t - started, 2) for t in instances.times[worst][:most]]
    assert most <= allowed, f"an instance was probed {most} times in {elapsed:.1f}s (at most {allowed} expected): {when}"
