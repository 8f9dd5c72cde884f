"""Control traffic in lanes: an abort storm cannot starve registrations; no idle sockets between rounds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web

from ..conftest import wait_until


class HungInstances:
    """Many instances (one aiohttp app on many ports): healthy, but every abort hangs until closed."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.aborts_started = 0
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/abort_requests", self._abort)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        self.ports: list[int] = []

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _abort(self, request: web.Request) -> web.Response:
        self.aborts_started += 1
        await self.release.wait()
        return web.json_response({"status": "ok"})

    async def start(self, count: int) -> None:
        await self.runner.setup()
        for _ in range(count):
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.ports.append(site.port)

    async def close(self) -> None:
        self.release.set()
        await self.runner.cleanup()


@pytest_asyncio.fixture
async def hung() -> AsyncIterator[HungInstances]:
    instances = HungInstances()
    try:
        yield instances
    finally:
        await instances.close()


async def _register(http, url: str, port: int) -> int:
    async with http.post(url + "/register", json={"role": "mixed", "host_ip": "127.0.0.1", "port": port}) as resp:
        await resp.read()
        return resp.status


async def test_registrations_succeed_while_aborts_to_hung_instances_fill_the_abort_lane(
    router_factory, mock_backend_factory, hung, http
):
    await hung.start(40)
    server = await router_factory(health_pool_size=8, health_check_timeout_secs=2.0,
                                  health_check_interval_secs=3600)
    for port in hung.ports:
        assert await _register(http, server.url, port) == 200
    for _ in range(5):  # 200 aborts that each hang for the whole 2 s timeout
        async with http.post(server.url + "/v1/abort_requests", json={"abort_all": True}) as resp:
            assert resp.status == 200
    lanes = server.router.upstream.control
    assert await wait_until(lambda: lanes.in_use("abort") == lanes.lanes["abort"].size)
    assert lanes.waiting("abort") > 0  # the storm is really queued
    healthy = await mock_backend_factory()
    statuses = [await _register(http, server.url, healthy.port) for _ in range(10)]
    assert statuses == [200] * 10
    assert lanes.waiting("abort") > 0  # and it was still going on meanwhile


async def test_a_health_round_over_many_instances_leaves_no_idle_control_sockets(router_factory, hung, http):
    await hung.start(60)
    server = await router_factory(health_pool_size=8, health_check_interval_secs=3600)
    before = len(os.listdir("/proc/self/fd"))
    for port in hung.ports:
        assert await _register(http, server.url, port) == 200
    await server.router.check_instances()  # one probe of each of the 60
    # a keep-alive pool would hold ~60 idle sockets here (x2: both ends live in this process)
    assert await wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before + 8 + 2)
