"""A worker's link to the rest of its router: the shared registry, the supervisor, the other workers.

The ``Router`` of a worker process (``fdrouter serve --workers N``) delegates here what must
be the same in every worker:

- **registry**: ``/register`` and ``/deregister`` are written to the shared registry (under the
  writers' lock), then mirrored; every request first applies whatever changed
  (``poll``: three word reads when nothing did), so an instance registered through any worker
  is routed to by every worker from the moment the answer is sent;
- **health**: no worker probes on a schedule; the supervisor does, once per interval for the
  whole router, and its verdicts arrive through the mirror. A worker that sees a 5xx asks the
  supervisor to probe now;
- **learning**: what a cache-aware policy decides is sent to the other workers, which ``learn``
  it, so every worker's prefix tree knows every worker's traffic.

A background ticker polls every ``TICK_SECS`` too, so an idle worker forgets a deregistered
instance (and its policy state) without waiting for traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import InstanceUnhealthy
from ..health_state import Health
from ..instances import InstanceInfo, Role
from ..policies.base import RoutingFacts
from ..registry import InstanceState
from .peer_exchange import MAX_DATAGRAM, PeerExchange
from .shared_registry import RegistryMirror, publish, unpublish
from .shared_state import SUPERVISOR, SharedState

if TYPE_CHECKING:
    from ..router import Router

log = logging.getLogger(__name__)

TICK_SECS = 0.05
_MAX_SHARED_TEXT = MAX_DATAGRAM // 2  # prompt characters another worker learns (JSON escapes grow it)


class FleetLink:
    """The shared-state side of one worker's Router (see the module docstring)."""

    def __init__(self, router: Router, shared: SharedState) -> None:
        self.router = router
        self.shared = shared
        self.mirror = RegistryMirror(router.registry, shared.shm, worker=shared.worker, on_removed=router.forget)
        self.exchange = PeerExchange(shared.directory, shared.name, shared.peers, self._on_message)
        self._ticker: asyncio.Task | None = None

    async def __aenter__(self) -> FleetLink:
        self.exchange.start()
        self.mirror.poll()
        self._ticker = asyncio.create_task(self._tick(), name="fdrouter-fleet-link")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.exchange.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECS)
            self.mirror.poll()

    def poll(self) -> None:
        """Apply what changed in the shared registry, health and remote metrics (per request)."""
        self.mirror.poll()

    # -- registration -------------------------------------------------------------------------

    async def register(self, info: InstanceInfo) -> InstanceState:
        """Probe (unless it is a heartbeat of a healthy instance), publish, mirror; the local state."""
        self.poll()
        registry = self.router.registry
        known = registry.get(info.key)
        heartbeat = known is not None and known.health.state is Health.HEALTHY and known.role is info.role
        if not heartbeat:
            if not await self.router.upstream.probe(info.url, lane="register"):
                config = self.router.config
                raise InstanceUnhealthy(
                    f"instance {info.url} did not answer {config.health_check_endpoint} with 2xx "
                    f"within {config.health_check_timeout_secs:g}s; not registered")
        elif known is not None and known.info.is_paused != info.is_paused:
            log.info("instance %s %s", info.url, "paused: no new requests" if info.is_paused else "resumed")
        publish(self.shared.shm, info, Health.HEALTHY)
        self.poll()
        state = registry.get(info.key)
        assert state is not None
        if known is None:
            log.info("registered %s instance %s%s", info.role.value, info.url, " (paused)" if info.is_paused else "")
        return state

    def deregister(self, key: tuple[str, int]) -> InstanceState | None:
        """Remove from the shared registry; the local state as it was, or None if unknown."""
        self.poll()
        state = self.router.registry.get(key)
        if not unpublish(self.shared.shm, key):
            return None
        self.poll()
        return state

    # -- messages -------------------------------------------------------------------------------

    def share(self, role: Role, url: str, facts: RoutingFacts) -> None:
        """Tell the other workers what this worker's learning policy decided."""
        message: dict[str, Any] = {"t": "learn", "role": role.value, "url": url}
        if facts.prompt_blocks is not None:
            message["blocks"] = list(facts.prompt_blocks)
        elif facts.prompt_text:
            message["text"] = facts.prompt_text[:_MAX_SHARED_TEXT]
        self.exchange.send(message, to=self._workers())

    def request_probe(self, url: str) -> None:
        """Ask the supervisor to probe an instance now (it answered a 5xx that is no verdict)."""
        self.exchange.send({"t": "probe", "url": url}, to=[SUPERVISOR])

    def _workers(self) -> list[str]:
        return [p for p in self.exchange.peers if p != SUPERVISOR]

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("t") != "learn":
            return
        policy = self.router.policies.get(Role(message["role"]))
        if policy is None or not policy.learns:
            return
        blocks = message.get("blocks")
        facts = RoutingFacts(prompt_text=message.get("text"), prompt_blocks=tuple(blocks) if blocks else None,
                             now=asyncio.get_running_loop().time())
        policy.learn(message["url"], facts)


__all__ = ["TICK_SECS", "FleetLink"]
