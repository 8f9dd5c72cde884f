"""The upstream client's error mapping (aioresponses) and its two separate pools."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aioresponses import aioresponses

from fdrouter.config import RouterConfig
from fdrouter.errors import UpstreamError, UpstreamTimeout
from fdrouter.testing import MockBehavior, closed_port
from fdrouter.upstream import UpstreamClient

URL = "http://10.9.9.9:8000"


@pytest.fixture
async def client():
    async with UpstreamClient(RouterConfig(health_check_timeout_secs=1)) as upstream:
        yield upstream


async def test_control_connection_refused_becomes_upstream_error(client):
    with aioresponses() as mocked:
        mocked.post(URL + "/v1/abort_requests", exception=aiohttp.ClientConnectorError(
            connection_key=None, os_error=ConnectionRefusedError(111, "Connection refused")))
        with pytest.raises(UpstreamError) as info:
            await client.control_request("POST", URL + "/v1/abort_requests", lane="abort", json={"abort_all": True})
    assert info.value.status == 502
    assert "control" in info.value.message and "Connection refused" in info.value.message


async def test_control_timeout_becomes_upstream_timeout_which_is_also_a_timeout_error(client):
    with aioresponses() as mocked:
        mocked.get(URL + "/v1/models", exception=TimeoutError())
        with pytest.raises(UpstreamTimeout) as info:
            await client.control_request("GET", URL + "/v1/models", lane="models")
    assert info.value.status == 504
    assert isinstance(info.value, asyncio.TimeoutError)


async def test_control_server_disconnect_becomes_upstream_error(client):
    with aioresponses() as mocked:
        mocked.get(URL + "/v1/models", exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(UpstreamError, match="ServerDisconnectedError"):
            await client.control_request("GET", URL + "/v1/models", lane="models")


async def test_probe_is_false_when_the_connection_fails(client):
    with aioresponses() as mocked:
        mocked.get(URL + "/health", exception=aiohttp.ClientConnectionError())
        assert await client.probe(URL) is False
        mocked.get(URL + "/health", exception=TimeoutError())
        assert await client.probe(URL) is False


async def test_generation_connection_refused_names_the_leg_and_the_cause(client):
    with closed_port() as port, pytest.raises(UpstreamError) as info:  # nothing listens there
        async with client.post("127.0.0.1", port, "/v1/completions", b"{}", leg="prefill"):
            pass
    assert info.value.status == 502
    assert "cannot connect to prefill" in info.value.message and "refused" in info.value.message.lower()
    assert client.acquired_connections() == 0


async def test_generation_timeout_becomes_upstream_timeout_and_closes_the_connection(mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(hang_before_headers=True))
    async with UpstreamClient(RouterConfig(request_timeout_secs=0.3)) as upstream:
        with pytest.raises(UpstreamTimeout) as info:
            async with upstream.post(backend.host, backend.port, "/v1/completions", b'{"prompt": "x"}',
                                     leg="decode"):
                pass
        assert isinstance(info.value, asyncio.TimeoutError) and "decode" in info.value.message
        assert upstream.acquired_connections() == 0
    assert await backend.wait_for(lambda b: b.disconnects == 1)


# aioresponses 0.7.9 cannot build a ClientResponse on aiohttp 3.14 (missing stream_writer), and the
# generation pool is not aiohttp's: paths with a response body run against a real mock backend.


async def test_broken_stream_while_reading_is_converted_inside_the_context(client, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=20, reset_after_chunks=2))
    body = b'{"prompt": "x", "stream": true}'
    with pytest.raises(UpstreamError, match="broke off"):
        async with client.post(backend.host, backend.port, "/v1/completions", body, leg="mixed") as resp:
            await resp.read()


async def test_errors_that_are_not_upstream_pass_unchanged_and_close_the_response(client, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=500, token_delay=0.01))
    with pytest.raises(KeyError):
        async with client.post(backend.host, backend.port, "/v1/completions", b'{"prompt": "x", "stream": true}',
                               leg="mixed"):
            raise KeyError("ours")
    assert await backend.wait_for(lambda b: b.disconnects == 1)
    assert client.acquired_connections() == 0


async def test_probe_is_true_only_for_a_2xx_health_answer_in_time(client, mock_backend_factory):
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
    config = RouterConfig(health_pool_size=8)
    async with UpstreamClient(config) as upstream:
        generation, control = upstream.generation_pool, upstream.control_session
        assert control.connector.limit == upstream.control.max_sockets
        assert upstream.control.lanes["health"].size == 8
        assert control.timeout.total == config.health_check_timeout_secs
        assert not generation.closed and not control.closed
    assert generation.closed and control.closed
