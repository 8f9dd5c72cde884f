"""The set of known instances, their health and their load counters.

Bookkeeping only: no I/O. The health monitor and the request path feed it outcomes;
it returns what changed, and the caller logs or acts. All calls happen on the event
loop thread with no await inside, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from .breaker import CircuitBreaker
from .errors import TooManyInstances
from .health_state import Health, HealthTracker, Transition
from .instances import InstanceInfo, Role
from .policies.base import RemoteMetrics


class InstanceState:
    """One registered instance: its info, health and live load. Policies read it, never write."""

    __slots__ = (
        "info", "url", "role", "health", "breaker", "in_flight", "in_flight_tokens", "requests_total", "remote",
    )

    def __init__(self, info: InstanceInfo, health: HealthTracker, breaker: CircuitBreaker) -> None:
        self.info = info
        self.url = info.url
        self.role = info.role
        self.health = health
        self.breaker = breaker
        self._reset_load()
        self.remote: RemoteMetrics | None = None  # set by the metrics scraper (remote_metrics policy)

    def _reset_load(self) -> None:
        self.in_flight = 0
        self.in_flight_tokens = 0
        self.requests_total = 0

    def add_load(self, requests: int, tokens: int) -> None:
        """A leg starts (+1, +tokens) or ends (-1, -tokens) on this instance."""
        self.in_flight += requests
        self.in_flight_tokens += tokens
        if requests > 0:
            self.requests_total += requests

    def to_dict(self, now: float) -> dict:
        """The ``/registered`` view of this instance; ``now`` is the event-loop clock."""
        return {
            "role": self.role.value,
            "url": self.url,
            "health": self.health.state.value,
            "circuit": self.breaker.state_at(now).value,
            "in_flight_requests": self.in_flight,
            "in_flight_tokens": self.in_flight_tokens,
            "requests_total": self.requests_total,
            "version": self.info.version,
            "is_paused": self.info.is_paused,
            "connected_decodes": list(self.info.connected_decodes),
            "info": self.info.to_fastdeploy_dict(),
        }


class Registry:
    """Instances by (host, port), with a cached routable list per role."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        success_threshold: int,
        breaker_factory: Callable[[], CircuitBreaker] = CircuitBreaker.disabled,
        max_instances: int | None = None,
    ) -> None:
        self._failure_threshold = failure_threshold
        self._success_threshold = success_threshold
        self._breaker_factory = breaker_factory
        self._max_instances = max_instances
        self._instances: dict[tuple[str, int], InstanceState] = {}
        self._routable: dict[Role, tuple[InstanceState, ...]] = {}

    def add(self, info: InstanceInfo, *, health: Health = Health.HEALTHY) -> tuple[InstanceState, bool]:
        """Register or refresh an instance; returns it and whether it is new.

        Re-registering keeps the load counters (in-flight requests are still running there)
        and refreshes the info, since a restarted server may announce new ports (a heartbeat
        that changes nothing that routing reads keeps the routable lists). A new instance
        beyond ``max_instances`` raises TooManyInstances.
        """
        existing = self._instances.get(info.key)
        if existing is not None:
            if existing.role is not info.role or existing.info.is_paused != info.is_paused:
                self._routable.clear()
            existing.info = info
            existing.role = info.role
            return existing, False
        if self._max_instances is not None and len(self._instances) >= self._max_instances:
            raise TooManyInstances(
                f"the router already has {len(self._instances)} instances registered, its limit "
                f"(--max-instances); deregister one first"
            )
        tracker = HealthTracker(
            failure_threshold=self._failure_threshold, success_threshold=self._success_threshold, state=health
        )
        state = InstanceState(info, tracker, self._breaker_factory())
        self._instances[info.key] = state
        self._routable.clear()
        return state, True

    def heartbeat(self, info: InstanceInfo) -> tuple[InstanceState, bool] | None:
        """A registration of a known, healthy instance of the same role: its info refreshed, no probe
        needed. Returns it and whether ``is_paused`` changed; None when this is not such a heartbeat."""
        state = self._instances.get(info.key)
        if state is None or state.health.state is not Health.HEALTHY or state.role is not info.role:
            return None
        paused_changed = state.info.is_paused != info.is_paused
        self.add(info)
        return state, paused_changed

    def adopt(self, state: InstanceState) -> None:
        """Insert a state built elsewhere (a worker mirroring the shared registry), replacing any
        instance at the same (host, port)."""
        self._instances[state.info.key] = state
        self._routable.clear()

    def new_state(self, info: InstanceInfo, health: Health) -> tuple[HealthTracker, CircuitBreaker]:
        """The health tracker and breaker a new instance gets (thresholds from this registry)."""
        tracker = HealthTracker(
            failure_threshold=self._failure_threshold, success_threshold=self._success_threshold, state=health
        )
        return tracker, self._breaker_factory()

    def set_health(self, state: InstanceState, health: Health) -> None:
        """Take a health verdict decided elsewhere (the supervisor of a multi-worker router)."""
        if state.health.state is not health:
            if state.health.state.routable != health.routable:
                self._routable.clear()
            state.health.state = health
            state.health.failures = state.health.successes = 0

    def remove(self, key: tuple[str, int]) -> InstanceState | None:
        """Forget an instance; requests already running on it finish and release normally."""
        state = self._instances.pop(key, None)
        if state is not None:
            self._routable.clear()
        return state

    def get(self, key: tuple[str, int]) -> InstanceState | None:
        """The instance registered at (host, port), if any."""
        return self._instances.get(key)

    def all(self) -> list[InstanceState]:
        """Every registered instance, in registration order."""
        return list(self._instances.values())

    def routable(self, role: Role) -> tuple[InstanceState, ...]:
        """Instances of ``role`` that may get traffic now: healthy and not paused (cached until something changes)."""
        cached = self._routable.get(role)
        if cached is None:
            cached = tuple(s for s in self._instances.values()
                           if s.role is role and s.health.state.routable and not s.info.is_paused)
            self._routable[role] = cached
        return cached

    def observe(self, state: InstanceState, ok: bool) -> Transition | None:
        """Feed one health outcome; returns the transition if the state changed."""
        transition = state.health.observe(ok)
        if transition is not None and transition.old.routable != transition.new.routable:
            self._routable.clear()
        return transition

    def counts(self) -> dict[str, int]:
        """Registered instances per role (FastDeploy's ``/registered_number``)."""
        out = {role.value: 0 for role in Role}
        for state in self._instances.values():
            out[state.role.value] += 1
        return out


__all__ = ["InstanceState", "Registry"]
