"""The health monitor: checks every instance concurrently each interval, on the control pool."""

from __future__ import annotations

import asyncio
import logging

from .registry import InstanceState, Registry
from .upstream import UpstreamClient

log = logging.getLogger("fdrouter.health")


class HealthMonitor:
    """Background health rounds; each check has its own timeout (the control session's)."""

    def __init__(self, registry: Registry, upstream: UpstreamClient, *, interval: float) -> None:
        self._registry = registry
        self._upstream = upstream
        self._interval = interval
        self._task: asyncio.Task | None = None
        self.rounds = 0

    async def check(self, state: InstanceState) -> bool:
        """Probe one instance and feed the outcome to its state machine; log changes once."""
        ok = await self._upstream.probe(state.url)
        transition = self._registry.observe(state, ok)
        if transition is not None:
            level = logging.INFO if transition.new.routable else logging.WARNING
            log.log(level, "instance %s (%s): %s -> %s", state.url, state.role.value,
                    transition.old.value, transition.new.value)
        return ok

    async def run_round(self) -> None:
        """Check every registered instance at once."""
        states = self._registry.all()
        if states:
            await asyncio.gather(*(self.check(s) for s in states))
        self.rounds += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_round()
            except Exception:  # a bug in one round must not end health checking for good
                log.exception("health round failed")

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="fdrouter-health-monitor")

    async def stop(self) -> None:
        """Stop the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
