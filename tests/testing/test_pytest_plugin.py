"""The pytest plugin's fixtures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fdrouter.testing import closed_port

from .helpers import connection_refused


async def test_factory_fixture_hands_out_started_backends_on_the_requested_port(
    mock_backend_factory, session
) -> None:
    with closed_port() as port:
        backend = await mock_backend_factory(port=port, role="decode")
        assert backend.port == port
        assert backend.role == "decode"
        async with session.get(backend.url + "/health") as response:
            assert response.status == 200


async def test_factory_fixture_keeps_a_closed_backends_port_refusing_until_teardown(mock_backend_factory) -> None:
    backend = await mock_backend_factory()
    await backend.close()  # a dead instance: nothing else may start answering on its port
    assert connection_refused(backend.port)
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", backend.port))


def test_free_port_fixture_is_a_port_number(free_port) -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= free_port <= high


async def test_router_factory_hands_out_started_routers(router_factory, http) -> None:
    server = await router_factory(policy="round_robin")
    assert server.config.policy == "round_robin"
    async with http.get(server.url + "/health") as response:
        assert response.status == 200


async def test_cluster_fixture_registers_backends_with_a_router_from_router_factory(cluster) -> None:
    c = await cluster(mixed=2, behavior={"output_tokens": 2})
    assert len(c.backends) == 2 and all(b.behavior.output_tokens == 2 for b in c.backends)
    assert c.backends[0].behavior is not c.backends[1].behavior  # each its own, to flip alone
    assert len(c.server.router.registry.all()) == 2
    status, answer = await c.chat()
    assert (status, answer["usage"]["completion_tokens"]) == (200, 2)
