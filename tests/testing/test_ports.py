"""Loopback ports: a free one, and a held one that refuses connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fdrouter.testing import closed_port, free_port

from .helpers import connection_refused


def test_free_port_returns_a_port_the_kernel_handed_out() -> None:
    # Binding the port again here would race with every other process on the machine (that is
    # free_port's caveat), so check what holds regardless: bind(0) picks from the ephemeral range.
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(low <= free_port() <= high for _ in range(20))


def test_a_closed_port_refuses_connections_and_cannot_be_taken_while_held() -> None:
    with closed_port() as port:
        assert connection_refused(port)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        with pytest.raises(OSError), closed_port(port=port):
            pass  # not even another holder gets it
        assert free_port() != port
