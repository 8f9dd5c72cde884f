"""The health monitor: checks every instance concurrently each interval, on the control pool."""

from __future__ import annotations

import asyncio
import logging

from .periodic import Periodic
from .registry import InstanceState, Registry
from .upstream import UpstreamClient

log = logging.getLogger(__name__)


class HealthMonitor(Periodic):
    """Background health rounds; each check has its own timeout (the control session's)."""

    task_name = "fdrouter-health-monitor"

    def __init__(self, registry: Registry, upstream: UpstreamClient, *, interval: float) -> None:
        super().__init__(interval=interval, immediate=False)
        self._registry = registry
        self._upstream = upstream

    async def check(self, state: InstanceState) -> bool:
        """Probe one instance and feed the outcome to its state machine; log changes once."""
        ok = await self._upstream.probe(state.url)
        transition = self._registry.observe(state, ok)
        if transition is not None:
            level = logging.INFO if transition.new.routable else logging.WARNING
            log.log(level, "instance %s (%s): %s -> %s", state.url, state.role.value,
                    transition.old.value, transition.new.value)
        if ok:  # a healthy answer ends an open circuit's cooldown early: trials may start now
            circuit = state.breaker.on_probe_ok(asyncio.get_running_loop().time())
            if circuit is not None:
                log.info("instance %s circuit %s -> %s (health probe ok)", state.url, circuit.old.value,
                         circuit.new.value)
        return ok

    async def run_round(self) -> None:
        """Check every registered instance at once."""
        states = self._registry.all()
        if states:
            await asyncio.gather(*(self.check(s) for s in states))
        self.rounds += 1


__all__ = ["HealthMonitor"]
