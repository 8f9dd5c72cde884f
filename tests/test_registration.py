"""The model-server helpers: register with retries, and stay registered across router restarts."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from fdrouter import RouterConfig, RouterServer, keep_registered, register_instance, register_instance_sync
from fdrouter.registration import HEARTBEAT_SECS, RegistrationError, heartbeat_body
from fdrouter.testing import closed_port

from .conftest import wait_until


async def test_register_instance_retries_until_the_router_is_up(mock_backend_factory):
    backend = await mock_backend_factory()
    with closed_port() as port:  # refuses connections until the router listens there
        task = asyncio.create_task(register_instance(f"http://127.0.0.1:{port}", backend.register_info(),
                                                     retries=1000, backoff_secs=0.01, max_backoff_secs=0.01))
        # the router is not there yet: attempts fail and are retried (a window for a wrong early exit)
        await asyncio.sleep(0.3)
        assert not task.done()
        async with RouterServer(RouterConfig(port=port)) as server:
            answer = await asyncio.wait_for(task, timeout=30)
            assert answer["status"] == "success"
            assert len(server.router.registry.all()) == 1


async def test_register_instance_does_not_retry_a_4xx(router_factory, mock_backend_factory):
    backend = await mock_backend_factory(role="prefill")
    server = await router_factory()  # mixed mode: a prefill instance is refused
    with pytest.raises(RegistrationError) as info:
        await register_instance(server.url, backend.register_info(), retries=5, backoff_secs=5)
    assert info.value.status == 400


async def test_register_instance_gives_up_after_the_retries():
    with closed_port() as port, pytest.raises(RegistrationError, match="after 3 attempts"):
        await register_instance(f"http://127.0.0.1:{port}", {"role": "mixed"}, retries=2, backoff_secs=0.01)


def test_register_instance_sync_works_without_a_loop():
    with closed_port() as port, pytest.raises(RegistrationError):
        register_instance_sync(f"http://127.0.0.1:{port}", {}, retries=0)


async def test_register_instance_sync_refuses_inside_a_running_loop():
    with pytest.raises(RuntimeError, match="running event loop"):
        register_instance_sync("http://127.0.0.1:1", {})


async def test_keep_registered_re_registers_after_a_router_restart(mock_backend_factory):
    backend = await mock_backend_factory()
    # held for the whole test: between the two routers nobody else can start listening on it
    with closed_port() as port:
        async with RouterServer(RouterConfig(port=port)) as first:
            keeper = asyncio.create_task(keep_registered(first.url, backend.register_info(), interval_secs=0.05,
                                                         retries=0, timeout_secs=1))
            try:
                assert await wait_until(lambda: len(first.router.registry.all()) == 1)
                await first.close()
                async with RouterServer(RouterConfig(port=port)) as second:  # a fresh router knows nobody
                    assert await wait_until(lambda: len(second.router.registry.all()) == 1)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)


async def test_register_instance_sends_fastdeploys_heartbeat_fields_when_given(router_factory, mock_backend_factory):
    backend = await mock_backend_factory()
    server = await router_factory()
    decodes = [{"host_ip": "10.0.0.9", "port": "8000"}]
    await register_instance(server.url, backend.register_info(), version="v3", is_paused=True,
                            connected_decodes=decodes)
    [state] = server.router.registry.all()
    assert (state.info.version, state.info.is_paused, state.info.connected_decodes) == ("v3", True, tuple(decodes))


def test_the_heartbeat_body_adds_only_the_fields_given():
    info = {"role": "mixed", "host_ip": "127.0.0.1", "port": 1}
    assert heartbeat_body(info) == info
    assert heartbeat_body(info, is_paused=False) == {**info, "is_paused": False}


def test_keep_registered_heartbeats_every_5_seconds_by_default_as_fastdeploy():
    assert inspect.signature(keep_registered).parameters["interval_secs"].default == HEARTBEAT_SECS == 5.0


async def test_keep_registered_asks_the_callables_anew_for_each_heartbeat(router_factory, mock_backend_factory):
    backend = await mock_backend_factory()
    server = await router_factory()
    paused = [True]
    keeper = asyncio.create_task(keep_registered(server.url, backend.register_info(), interval_secs=0.02,
                                                 is_paused=lambda: paused[0], version="v1", retries=0))
    try:
        assert await wait_until(lambda: any(s.info.is_paused for s in server.router.registry.all()))
        paused[0] = False
        [state] = server.router.registry.all()
        assert await wait_until(lambda: not state.info.is_paused)
        assert state.info.version == "v1"
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
