"""The router's control operations: aborts, model listing, on-demand health checks, decode listing.

A mixin of ``Router`` (kept apart so the request path in ``router.py`` stays readable): these
go over the control pool's lanes, never the generation pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, NoHealthyInstance, RouterError
from .instances import Role
from .registry import InstanceState

if TYPE_CHECKING:
    from .config import RouterConfig
    from .health_monitor import HealthMonitor
    from .registry import Registry
    from .upstream import UpstreamClient
    from .workers.fleet_link import FleetLink

log = logging.getLogger(__name__)


class RouterControl:
    """Control operations of a Router (see the module docstring)."""

    config: RouterConfig
    registry: Registry
    upstream: UpstreamClient
    monitor: HealthMonitor
    _link: FleetLink | None

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

    def decode_instances(self, version: str | None) -> list[dict]:
        """FastDeploy's ``GET /decode_instances[?version=V]``: healthy decode instances (paused too:
        a prefill instance may pre-connect to one), of that version if given, as FastDeploy lists them."""
        return [s.info.to_fastdeploy_dict(version=True) for s in self.registry.all()
                if s.role is Role.DECODE and s.health.state.routable and version in (None, s.info.version)]

    def abort(self, body: Any) -> int:
        """Forward an abort to every instance in the background; returns how many were asked."""
        if not isinstance(body, dict):
            raise BadRequest("abort body must be a JSON object with 'req_ids' or 'abort_all'")
        req_ids = body.get("req_ids")
        abort_all = body.get("abort_all", False)
        if not isinstance(abort_all, bool):
            raise BadRequest("field 'abort_all' must be true or false")
        if req_ids is not None and (not isinstance(req_ids, list) or not all(isinstance(r, str) for r in req_ids)):
            raise BadRequest("field 'req_ids' must be a list of strings")
        if not abort_all and not req_ids:
            raise BadRequest("give 'req_ids' (a non-empty list) or 'abort_all': true")
        targets = self.registry.all()
        for state in targets:
            self._spawn(self._abort_one(state, body))
        return len(targets)

    async def _abort_one(self, state: InstanceState, body: dict) -> None:
        try:
            status, _, _ = await self.upstream.control_request(
                "POST", state.url + "/v1/abort_requests", lane="abort", json=body)
            if status >= 300:
                log.warning("abort on %s answered HTTP %s", state.url, status)
        except RouterError as exc:
            log.warning("abort on %s failed: %s", state.url, exc.message)

    def needed_roles(self) -> tuple[Role, ...]:
        """Roles that must have a healthy instance for the router to serve."""
        return (Role.PREFILL, Role.DECODE) if self.config.splitwise else (Role.MIXED,)

    async def check_instances(self) -> dict[str, int]:
        """Probe every instance now; healthy count per needed role (a worker only counts: the supervisor
        owns the verdicts)."""
        if self._link is not None:
            self._link.poll()
            states = [s for s in self.registry.all() if s.role in self.needed_roles() and not s.info.is_paused]
            ok = await asyncio.gather(*(self.upstream.probe(s.url) for s in states))
            return {role.value: sum(1 for s, good in zip(states, ok, strict=True) if good and s.role is role)
                    for role in self.needed_roles()}
        await self.monitor.run_round()
        return {role.value: len(self.registry.routable(role)) for role in self.needed_roles()}

    async def models(self) -> tuple[int, bytes, str]:
        """``GET /v1/models`` from a healthy instance that serves generation."""
        role = Role.DECODE if self.config.splitwise else Role.MIXED
        candidates = self.registry.routable(role)
        if not candidates:
            raise NoHealthyInstance(f"no healthy {role.value} instance to list models from")
        return await self.upstream.control_request("GET", candidates[0].url + "/v1/models", lane="models")



__all__ = ["RouterControl"]
