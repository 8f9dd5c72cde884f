"""The supervisor's fleet-wide jobs: what a multi-worker router must do once, not once per worker.

- static instances (``--worker-urls``, ``--register-config``) are probed and published before
  the workers start;
- **health**: every instance is checked once per ``--health-check-interval-secs`` for the whole
  router, by the same ``HealthMonitor`` and thresholds a single router uses; each verdict is
  written to the shared health array (with the registration's generation) and every worker
  applies it;
- ``/metrics`` **scrapes** (for ``remote_metrics``) run here too, written to shared memory;
- a worker's request to probe an instance now (it answered a 5xx) is served here.

The supervisor mirrors the shared registry like a worker does, but its health trackers are
the authoritative ones: it never reads verdicts back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..config import RouterConfig
from ..health_monitor import HealthMonitor
from ..health_state import Health
from ..metrics_scraper import MetricsScraper
from ..policies import make_policy
from ..registry import InstanceState, Registry
from ..router import _breaker_factory
from ..upstream import UpstreamClient
from .peer_exchange import PeerExchange
from .shared_registry import RegistryMirror, SharedInstanceState, health_word, publish
from .shared_state import SharedState

log = logging.getLogger(__name__)

_TICK_SECS = 0.05


class FleetJobs:
    """Health checks and scrapes for every worker of one router (see the module docstring)."""

    def __init__(self, config: RouterConfig, shared: SharedState) -> None:
        self.config = config
        self.shared = shared
        self.registry = Registry(failure_threshold=config.health_failure_threshold,
                                 success_threshold=config.health_success_threshold,
                                 breaker_factory=_breaker_factory(config), max_instances=config.max_instances)
        self.upstream = UpstreamClient(config)
        self.mirror = RegistryMirror(self.registry, shared.shm, worker=None, on_removed=lambda state: None,
                                     apply_health=False)
        self.monitor = _FleetMonitor(self, interval=config.health_check_interval_secs)
        needs = frozenset().union(*(make_policy(n, **config.options_for(n)).needs for n in config.policy_names))
        self.scraper = (_FleetScraper(self, interval=config.metrics_scrape_interval_secs)
                        if "remote_metrics" in needs else None)
        self.exchange = PeerExchange(shared.directory, shared.name, shared.peers, self._on_message)
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None

    async def __aenter__(self) -> FleetJobs:
        await self.upstream.__aenter__()
        self.exchange.start()
        self.mirror.poll()
        self._ticker = asyncio.create_task(self._tick(), name="fdrouter-fleet-mirror")
        self.monitor.start()
        if self.scraper is not None:
            self.scraper.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scraper is not None:
            await self.scraper.stop()
        await self.monitor.stop()
        for task in [self._ticker, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.exchange.close()
        await self.upstream.close()

    async def add_static_instances(self) -> None:
        """Probe and publish the configured instances (down ones too: they recover later)."""
        infos = self.config.instances
        results = await asyncio.gather(*(self.upstream.probe(i.url) for i in infos))
        for info, ok in zip(infos, results, strict=True):
            publish(self.shared.shm, info, Health.HEALTHY if ok else Health.UNHEALTHY)
            if not ok:
                log.warning("static instance %s is not healthy yet; it gets traffic once it recovers", info.url)
        self.mirror.poll()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_SECS)
            self.mirror.poll()

    def publish_health(self) -> None:
        """Write every instance's verdict to shared memory; bump the version if any changed."""
        words = self.shared.shm.health
        changed = False
        for state in self.registry.all():
            if isinstance(state, SharedInstanceState):
                word = health_word(state.gen, state.health.state)
                if words[state.slot] != word:
                    words[state.slot] = word
                    changed = True
        if changed:
            self.shared.shm.bump_health()

    def publish_remote(self) -> None:
        """Write the scraped load of every instance to shared memory."""
        remote = self.shared.shm.remote
        for state in self.registry.all():
            if isinstance(state, SharedInstanceState) and state.remote is not None:
                base = state.slot * 3
                remote[base], remote[base + 1], remote[base + 2] = (
                    state.remote.running, state.remote.waiting, state.remote.scraped_at)
        self.shared.shm.bump_remote()

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("t") != "probe":
            return
        self.mirror.poll()
        for state in self.registry.all():
            if state.url == message.get("url"):
                task = asyncio.get_running_loop().create_task(self._probe_now(state))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe_now(self, state: InstanceState) -> None:
        await self.monitor.check(state)
        self.publish_health()


class _PublishEachRound:
    """Mixed into a Periodic job over the mirrored registry: mirror first, publish after each round."""

    _jobs: FleetJobs

    def publish(self) -> None:
        raise NotImplementedError

    async def run_round(self) -> None:
        self._jobs.mirror.poll()
        await super().run_round()  # type: ignore[misc]
        self.publish()


class _FleetMonitor(_PublishEachRound, HealthMonitor):
    """The health monitor over the mirrored registry, publishing its verdicts after each round."""

    def __init__(self, jobs: FleetJobs, *, interval: float) -> None:
        super().__init__(jobs.registry, jobs.upstream, interval=interval)
        self._jobs = jobs

    def publish(self) -> None:
        self._jobs.publish_health()


class _FleetScraper(_PublishEachRound, MetricsScraper):
    """The metrics scraper over the mirrored registry, publishing each round's results."""

    def __init__(self, jobs: FleetJobs, *, interval: float) -> None:
        super().__init__(jobs.registry, jobs.upstream, interval=interval)
        self._jobs = jobs

    def publish(self) -> None:
        self._jobs.publish_remote()


__all__ = ["FleetJobs"]
