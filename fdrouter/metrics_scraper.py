"""Background scraping of instances' ``/metrics`` for metric-driven policies (remote_metrics).

FastDeploy's Go router docs warn against fetching metrics synchronously per request: it
adds a round trip to every request and melts down exactly when instances are slow. So a
background task scrapes every instance each interval on the control pool, and the policy
reads the last result (``InstanceState.remote``), stale by at most about one interval.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client.parser import text_string_to_metric_families

from .errors import RouterError
from .periodic import Periodic
from .policies.base import RemoteMetrics
from .registry import InstanceState, Registry
from .upstream import UpstreamClient

log = logging.getLogger(__name__)

# FastDeploy's gauge names (fastdeploy/metrics/metrics.py); vLLM uses vllm:num_requests_*.
_RUNNING = ("fastdeploy:num_requests_running", "vllm:num_requests_running")
_WAITING = ("fastdeploy:num_requests_waiting", "vllm:num_requests_waiting")


def parse_load(text: str) -> tuple[float, float] | None:
    """(running, waiting) from Prometheus text, or None if neither gauge is there."""
    running = waiting = None
    for family in text_string_to_metric_families(text):
        if family.name in _RUNNING:
            running = sum(s.value for s in family.samples)
        elif family.name in _WAITING:
            waiting = sum(s.value for s in family.samples)
    if running is None and waiting is None:
        return None
    return running or 0.0, waiting or 0.0


def metrics_url(state: InstanceState) -> str:
    """Where an instance publishes metrics: its ``metrics_port`` if it registered one."""
    info = state.info
    if info.metrics_port:
        host = f"[{info.host_ip}]" if ":" in info.host_ip else info.host_ip
        return f"http://{host}:{info.metrics_port}/metrics"
    return state.url + "/metrics"


class MetricsScraper(Periodic):
    """Scrapes every registered instance each ``interval`` seconds, the first time at start."""

    task_name = "fdrouter-metrics-scraper"

    def __init__(self, registry: Registry, upstream: UpstreamClient, *, interval: float) -> None:
        super().__init__(interval=interval, immediate=True)
        self._registry = registry
        self._upstream = upstream

    async def scrape(self, state: InstanceState) -> bool:
        """One scrape; on success ``state.remote`` is replaced. Failures keep the old value."""
        try:
            status, body, _ = await self._upstream.control_request("GET", metrics_url(state), lane="scrape")
            if status != 200:
                return False
            load = parse_load(body.decode("utf-8", "replace"))
        except (RouterError, ValueError) as exc:
            log.debug("metrics scrape of %s failed: %s", state.url, exc)
            return False
        if load is None:
            return False
        state.remote = RemoteMetrics(running=load[0], waiting=load[1], scraped_at=asyncio.get_running_loop().time())
        return True

    async def run_round(self) -> None:
        """Scrape every instance at once."""
        states = self._registry.all()
        if states:
            await asyncio.gather(*(self.scrape(s) for s in states))
        self.rounds += 1


__all__ = ["MetricsScraper", "metrics_url", "parse_load"]
