"""Loopback ports for tests: a free one (racy) and a held one (``closed_port``, race-free)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago.

    It can race: another process may take the port before you bind it. Bind to port 0 and read
    the bound port where you can; where a port must be known first, or must stay unanswered, use
    `closed_port`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Hold a TCP port on `host` (an IP address) bound but not listening; yield its number.

    While held, connections to it are refused (nothing listens) and no other process can take
    it: bind(0) never hands it out, and binding it explicitly fails unless the binder sets
    SO_REUSEADDR. Such a server can still listen on it: asyncio's default on Unix, so MockBackend,
    RouterServer, ``fdrouter serve --port`` and ``python -m fdrouter.testing.mock_backend --port``
    all can. When that server stops, the port refuses connections again instead of reaching
    whatever took it next. So a test gets "a port where nothing listens", or "the port a server
    will start on (again)", without a race.

    `port` 0 (the default) holds a port the kernel picks; another one raises OSError if anything
    holds it already, even another ``closed_port``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, port))  # without SO_REUSEADDR: fails if any socket has the port
        # set after bind: from now on a server that asks for SO_REUSEADDR may bind and listen here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        yield sock.getsockname()[1]


__all__ = ["closed_port", "free_port"]
