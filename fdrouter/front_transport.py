"""The transport side of a lean front-end connection: writes with flow control, and one timer.

``ClientProtocol`` is the base of ``front.FrontConnection``; what it does has nothing to do with
HTTP:

- ``write`` hands bytes to the transport (``ClientDisconnected`` once the client is gone) and
  ``drain`` waits while the transport is over its high-water mark (``pause_writing``), so a
  client that reads slowly slows its answer down instead of growing the router's memory;
- ``pause_reading``/``resume_reading`` stop taking bytes from a client that is ahead of us;
- one timer serves every time limit of the connection: ``set_deadline`` moves the deadline
  (a float assignment), the timer is re-armed only when it fires early or a deadline comes
  sooner, and ``deadline_passed`` is called when the deadline is reached.
"""

from __future__ import annotations

import asyncio
import math

from .errors import ClientDisconnected


class ClientProtocol(asyncio.Protocol):
    """Writes with flow control, reads that can be held back, and one deadline timer."""

    __slots__ = ("loop", "transport", "write_paused", "_drain_waiter", "_reading", "_deadline", "_timer", "_timer_at")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        """The transport's buffer is over its high-water mark: writers wait (``drain``)."""
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading = True
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # -- writing -------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    def write(self, data: bytes) -> None:
        """Hand bytes to the transport; ``ClientDisconnected`` if the client is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ClientDisconnected("client disconnected before its answer was complete")
        transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if not self.write_paused:
            return
        if self.transport is None:
            raise ClientDisconnected("client disconnected before its answer was complete")
        waiter = self._drain_waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._drain_waiter = None
        if self.transport is None:
            raise ClientDisconnected("client disconnected before its answer was complete")

    def abort(self) -> None:
        """Cut the connection now (the write watchdog: a client that stopped reading)."""
        if self.transport is not None:
            self.transport.abort()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Take no more bytes from the client for now."""
        if self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Take bytes from the client again."""
        if not self._reading and self.transport is not None:
            self._reading = True
            self.transport.resume_reading()

    # -- the one timer ---------------------------------------------------------------------

    def set_deadline(self, when: float) -> None:
        """``deadline_passed`` is called at ``when`` (``math.inf``: never), unless moved before."""
        self._deadline = when
        if when < self._timer_at:  # the armed timer would fire too late (or none is armed)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer)
            self._timer_at = when

    def stop_timer(self) -> None:
        """No deadline any more (the connection is gone or handed over)."""
        self._deadline = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def deadline_passed(self) -> None:
        """The deadline was reached (subclasses act on it)."""

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        deadline = self._deadline
        # a timer may run a hair early (uvloop rounds to milliseconds): within 1 ms counts as reached
        if self.loop.time() + 0.001 < deadline:
            if deadline != math.inf:
                self.set_deadline(deadline)
            return
        self._deadline = math.inf
        self.deadline_passed()


__all__ = ["ClientProtocol"]
