"""Lifecycle: the Router as an async context manager, static instances, embedding."""

from __future__ import annotations

from fdrouter import Router, RouterConfig, RouterServer
from fdrouter.config_loader import parse_worker_urls
from fdrouter.health_state import Health
from fdrouter.testing import MockBackend, closed_port

from ..conftest import wait_until


async def test_router_opens_its_pools_on_enter_and_closes_them_on_exit():
    async with Router(RouterConfig()) as router:
        generation = router.upstream.generation_pool
        control = router.upstream.control_session
        assert not generation.closed and not control.closed
    assert generation.closed and control.closed


async def test_static_instance_down_at_start_gets_traffic_once_it_recovers(http):
    with closed_port() as port:  # down: connections refused, until the backend starts listening there
        config = RouterConfig(port=0, instances=parse_worker_urls([f"http://127.0.0.1:{port}"]),
                              health_check_interval_secs=0.05)
        async with RouterServer(config) as server:
            (state,) = server.router.registry.all()
            assert state.health.state is Health.UNHEALTHY
            async with http.post(server.url + "/v1/completions", json={"prompt": "x"}) as resp:
                assert resp.status == 503
            async with MockBackend(port=port) as backend:
                assert await wait_until(lambda: state.health.state is Health.HEALTHY)
                async with http.post(server.url + "/v1/completions", json={"prompt": "x"}) as resp:
                    assert resp.status == 200
                assert backend.requests_total == 1


async def test_router_server_binds_a_free_port_and_can_be_closed_twice(http):
    server = RouterServer(RouterConfig(port=0))
    async with server:
        assert server.port != 0
        async with http.get(server.url + "/health") as resp:
            assert resp.status == 200
    await server.close()
