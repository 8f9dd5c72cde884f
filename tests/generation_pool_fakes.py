"""An in-memory network for the generation pool's tests: bytes in, no sockets.

``FakeNetwork.install(loop)`` replaces the loop's ``create_connection``: each connection the
pool opens gets a ``FakeTransport`` that records what the pool writes and how it closed; the
test answers with ``feed(bytes)`` (split wherever it likes) or ``hang_up()``. It goes through
``loop.create_connection`` only, the pool's one way to open a connection, so the same tests
run against any version of the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["FakeNetwork", "FakeTransport"]


class FakeTransport(asyncio.Transport):
    """One fake TCP connection: the pool's protocol on one side, the test on the other."""

    def __init__(self, protocol: asyncio.Protocol, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.protocol = protocol
        self.loop = loop
        self.written = bytearray()
        self.closed_how: str | None = None
        """None while open; "close" or "abort" when the pool closed it, "peer" when the test did."""
        self.reading = True

    # -- the pool's side -----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed_how is not None

    def close(self) -> None:
        self._shut("close")

    def abort(self) -> None:
        self._shut("abort")

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading and self.closed_how is None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def _shut(self, how: str) -> None:
        if self.closed_how is None:
            self.closed_how = how
            # as asyncio's transports do: connection_lost runs in a later loop turn
            self.loop.call_soon(self.protocol.connection_lost, None)

    # -- the test's side (the instance) ----------------------------------------------------

    def feed(self, *pieces: bytes) -> None:
        """The instance sends ``pieces``, each arriving as its own read."""
        for piece in pieces:
            self.protocol.data_received(piece)

    def hang_up(self) -> None:
        """The instance closes the connection."""
        if self.closed_how is None:
            self.closed_how = "peer"
            self.protocol.connection_lost(None)

    def requests(self) -> int:
        """How many requests the pool wrote here (each ends with its body, which these tests keep at b'{}')."""
        return self.written.count(b"POST ")


class FakeNetwork:
    """Every connection the pool opened, in order.

    ``connect_hangs`` makes new connects wait forever: "syn" before any transport exists (a SYN
    nobody answers), "made" after the protocol got its transport (asyncio's create_connection
    still waiting for it to be ready); a cancelled "made" connect closes its transport, as
    asyncio's does."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []
        self.connects = 0
        self.connect_hangs: str | None = None
        self.pending_connects = 0
        self.abandoned: list[FakeTransport] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop, monkeypatch: Any) -> FakeNetwork:
        """Route ``loop.create_connection`` here for the rest of the test."""
        self._loop = loop
        monkeypatch.setattr(loop, "create_connection", self.create_connection)
        return self

    async def create_connection(self, factory: Callable[[], asyncio.Protocol], host: str, port: int,
                                **kwargs: Any) -> tuple[FakeTransport, asyncio.Protocol]:
        self.connects += 1
        loop = self._loop or asyncio.get_running_loop()
        protocol = transport = None
        if self.connect_hangs == "made":
            protocol = factory()
            transport = FakeTransport(protocol, loop)
            protocol.connection_made(transport)
        if self.connect_hangs:
            self.pending_connects += 1
            try:
                await loop.create_future()
            except BaseException:
                if transport is not None:
                    self.abandoned.append(transport)
                    transport.close()
                raise
            finally:
                self.pending_connects -= 1
        protocol = factory()
        transport = FakeTransport(protocol, loop)
        protocol.connection_made(transport)
        self.transports.append(transport)
        return transport, protocol

    @property
    def last(self) -> FakeTransport:
        """The connection opened last."""
        return self.transports[-1]
