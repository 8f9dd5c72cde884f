"""Control traffic to instances, in lanes: one job can never starve another.

Health checks, registration probes, abort fan-out, ``/metrics`` scrapes, ``/v1/models`` and
the KV-event streams all go to the instances over one small aiohttp session -- never over the generation pool.
Each job has its own lane: a bound on how many of its requests run at once and on how many
may wait. With 200 hung instances and repeated ``abort_all``, the abort lane fills up (each
call waits its full timeout) while registrations of a healthy instance still find their own
lane free.

Connections are not kept alive (``force_close``): control traffic is a probe every few
seconds per instance, and with thousands of instances keep-alive held one idle socket per
instance between rounds. So the sockets open at any time are at most the sum of the lanes'
sizes (see ``ControlLanes.max_sockets``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from .errors import UpstreamError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lane:
    """One job's share of the control pool."""

    size: int
    """Requests of this job in flight at once."""
    max_waiting: int
    """Requests that may wait for a place; beyond that they fail at once (a storm must not pile up)."""


def default_lanes(pool_size: int, streams: int = 1024) -> dict[str, Lane]:
    """The lanes for ``--health-pool-size`` ``pool_size``: health and scrapes get it whole, the rest less.

    ``kv_events`` holds one long-lived stream per instance (``streams``: ``--max-instances``), so it
    is sized by instances, not by the pool; a stream nobody opened costs no socket.
    """
    return {
        "health": Lane(pool_size, max_waiting=100_000),       # one check per instance per round
        "register": Lane(max(4, pool_size // 4), max_waiting=1_000),
        "abort": Lane(max(4, pool_size // 2), max_waiting=10_000),
        "scrape": Lane(pool_size, max_waiting=100_000),
        "models": Lane(4, max_waiting=100),
        "kv_events": Lane(streams, max_waiting=streams),
    }


class ControlLanes:
    """The control session and its lanes. An async context manager; ``request`` picks a lane."""

    def __init__(self, lanes: Mapping[str, Lane], *, timeout: float) -> None:
        self.lanes = dict(lanes)
        self._timeout = timeout
        self._slots = {name: asyncio.Semaphore(lane.size) for name, lane in self.lanes.items()}
        self._waiting = dict.fromkeys(self.lanes, 0)
        self._session: aiohttp.ClientSession | None = None

    @property
    def max_sockets(self) -> int:
        """Open sockets at most: every lane full, none kept idle."""
        return sum(lane.size for lane in self.lanes.values())

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying aiohttp session (for tests and diagnostics)."""
        if self._session is None:
            raise RuntimeError("ControlLanes is not started: use 'async with'")
        return self._session

    def in_use(self, lane: str) -> int:
        """Requests of ``lane`` running now."""
        return self.lanes[lane].size - self._slots[lane]._value

    def waiting(self, lane: str) -> int:
        """Requests of ``lane`` waiting for a place now."""
        return self._waiting[lane]

    async def __aenter__(self) -> ControlLanes:
        connector = aiohttp.TCPConnector(limit=self.max_sockets, force_close=True, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session; idempotent."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    @asynccontextmanager
    async def slot(self, lane: str) -> AsyncIterator[None]:
        """Hold a place in ``lane``; raises UpstreamError at once if too many already wait."""
        slots = self._slots[lane]
        if slots.locked():
            if self._waiting[lane] >= self.lanes[lane].max_waiting:
                raise UpstreamError(f"the control lane {lane!r} is saturated "
                                    f"({self._waiting[lane]} requests already waiting)")
            self._waiting[lane] += 1
            try:
                await slots.acquire()
            finally:
                self._waiting[lane] -= 1
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()

    @asynccontextmanager
    async def request(self, lane: str, method: str, url: str, *, json: Any = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """One control request in ``lane``: ``async with lanes.request("abort", "POST", url) as resp``.

        ``timeout`` replaces the session's (one check's timeout) for a long-lived stream.
        """
        session = self.session
        async with self.slot(lane), (session.request(method, url, json=json) if timeout is None else
                                     session.request(method, url, json=json, timeout=timeout)) as resp:
            yield resp


__all__ = ["ControlLanes", "Lane", "default_lanes"]
