"""The pytest plugin's fixtures."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from fdrouter.testing import MockBackend, closed_port
from fdrouter.testing.pytest_plugin import mock_backends

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


async def test_mock_backends_closes_everything_it_made_last_first() -> None:
    closed: list[str] = []
    # ports held past the exit, so that refused below can only mean the backends stopped listening
    with contextlib.ExitStack() as ports:
        async with mock_backends() as make:
            made = [await make(model=name, port=ports.enter_context(closed_port()))
                    for name in ("first", "second", "third")]
            for backend in made:
                original_close = backend.close

                async def close(backend: MockBackend = backend, original_close=original_close) -> None:
                    closed.append(backend.model)
                    await original_close()

                backend.close = close  # type: ignore[method-assign]
        assert closed == ["third", "second", "first"]
        assert all(connection_refused(backend.port) for backend in made)

