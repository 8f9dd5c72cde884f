"""The upstream client's error mapping (aioresponses) and its two separate pools."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aioresponses import aioresponses

from fdrouter.config import RouterConfig
from fdrouter.errors import UpstreamError, UpstreamTimeout
from fdrouter.testing import MockBehavior
from fdrouter.upstream import UpstreamClient

URL = "http://10.9.9.9:8000"


@pytest.fixture
async def client():
    async with UpstreamClient(RouterConfig(health_check_timeout_secs=1)) as upstream:
        yield upstream


async def test_connection_refused_becomes_upstream_error_naming_the_leg(client):
    with aioresponses() as mocked:
        mocked.post(URL + "/v1/completions", exception=aiohttp.ClientConnectorError(
            connection_key=None, os_error=ConnectionRefusedError(111, "Connection refused")))
        with pytest.raises(UpstreamError) as info:
            async with client.post(URL + "/v1/completions", b"{}", leg="prefill"):
                pass
    assert info.value.status == 502
    assert "prefill" in info.value.message and "Connection refused" in info.value.message


async def test_timeout_becomes_upstream_timeout_which_is_also_a_timeout_error(client):
    with aioresponses() as mocked:
        mocked.post(URL + "/v1/completions", exception=TimeoutError())
        with pytest.raises(UpstreamTimeout) as info:
            async with client.post(URL + "/v1/completions", b"{}", leg="decode"):
                pass
    assert info.value.status == 504
    assert isinstance(info.value, asyncio.TimeoutError)


async def test_server_disconnect_becomes_upstream_error(client):
    with aioresponses() as mocked:
        mocked.post(URL + "/x", exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(UpstreamError, match="ServerDisconnectedError"):
            async with client.post(URL + "/x", b"{}", leg="mixed"):
                pass


# aioresponses 0.7.9 cannot build a ClientResponse on aiohttp 3.14 (missing stream_writer), so
# paths that need a response body run against a real mock backend on loopback instead.


async def test_broken_stream_while_reading_is_converted_inside_the_context(client, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=20, reset_after_chunks=2))
    body = b'{"prompt": "x", "stream": true}'
    with pytest.raises(UpstreamError, match="broke off"):
        async with client.post(backend.url + "/v1/completions", body, leg="mixed") as resp:
            await resp.read()


async def test_errors_that_are_not_upstream_pass_unchanged_and_close_the_response(client, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=500, token_delay=0.01))
    with pytest.raises(KeyError):
        async with client.post(backend.url + "/v1/completions", b'{"prompt": "x", "stream": true}', leg="mixed"):
            raise KeyError("ours")
    assert await backend.wait_for(lambda b: b.disconnects == 1, timeout=1.0)
    assert client.acquired_connections() == 0


async def test_probe_is_true_only_for_a_2xx_health_answer(client, mock_backend_factory):
    backend = await mock_backend_factory()
    assert await client.probe(backend.url) is True
    backend.behavior.health_status = 503
    assert await client.probe(backend.url) is False
    backend.behavior.health_status = 200
    backend.behavior.health_delay = 5  # longer than the 1 s health timeout
    assert await client.probe(backend.url) is False
    await backend.close()
    assert await client.probe(backend.url) is False


async def test_generation_and_control_traffic_use_separate_pools():
    config = RouterConfig(max_connections=1000, health_pool_size=8)
    async with UpstreamClient(config) as upstream:
        generation, control = upstream.generation_session, upstream.control_session
        assert generation is not control
        assert generation.connector is not control.connector
        assert generation.connector.limit == 1000 and control.connector.limit == 8
        assert control.timeout.total == config.health_check_timeout_secs
        assert generation.timeout.total == config.request_timeout_secs
    assert generation.closed and control.closed
