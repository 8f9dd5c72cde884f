"""Prometheus metrics of one router, in its own registry (tests run many routers in one process).

Two kinds, chosen for a cheap hot path:
- events (requests, latencies, retries, errors, rejections) are counters and histograms the
  request path bumps: one dict lookup plus ``inc``/``observe`` per call, label children cached;
- state (in-flight, health, circuit, admission queue) is read live at scrape time from
  callbacks the router hands in, so no request ever touches a gauge and nothing goes stale.

Metric names (prefix ``fdrouter_``):

    fdrouter_requests_total{endpoint,status,instance}           counter
    fdrouter_request_duration_seconds{endpoint}                 histogram, receipt to last byte
    fdrouter_time_to_first_token_seconds{endpoint}              histogram, receipt to first body byte
    fdrouter_retries_total{reason}                              counter
    fdrouter_upstream_errors_total{instance,kind}               counter
    fdrouter_admission_rejected_total{reason}                   counter (queue_full, queue_timeout)
    fdrouter_pd_reschedules_total{instance}                     counter, requests the decode instance preempted
    fdrouter_instance_in_flight_requests{instance,role}         gauge (scrape time)
    fdrouter_instance_in_flight_tokens{instance,role}           gauge (scrape time)
    fdrouter_instance_healthy{instance,role}                    gauge, 1 gets traffic by health, 0 not
    fdrouter_instance_circuit_state{instance,role}              gauge, 0 closed, 1 half-open, 2 open
    fdrouter_admission_active / fdrouter_admission_queued       gauges (scrape time)

plus the process_* and python_* collectors of prometheus_client, registered in the same registry.

With ``fdrouter serve --workers N`` each worker process writes its events to
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor)
and ``render`` aggregates every worker's (``MultiProcessCollector``: counters and histograms
summed; a dead worker's counts stay, so they survive its restart); the live gauges come from
the shared state, so any worker reports the whole router. Process metrics are then left out
(they would describe one worker only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

# Seconds. 5 ms is a short answer through the router on loopback; the tail reaches the router's
# default request timeout (1800 s) because long generations are normal. vLLM's early
# vllm:e2e_request_latency_seconds stopped at 60 s (vllm/engine/metrics.py): every longer
# request fell into +Inf and its quantiles were lost.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
                   120.0, 300.0, 600.0, 1800.0)
# vLLM's early vllm:time_to_first_token_seconds ran from 1 ms to 10 s; a router adds queueing
# (admission, instance queues) and sees long prompts, so the tail goes on to 2 minutes.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0,
                60.0, 120.0)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """What a scrape reports about one instance; the router's callback builds one per instance."""

    url: str
    role: str
    in_flight: int
    in_flight_tokens: int
    healthy: bool
    """Whether health checks let the instance get traffic (healthy or suspect)."""
    circuit: int
    """``CircuitState.code``: 0 closed, 1 half-open, 2 open."""


class _LiveCollector:
    """Gauges computed at scrape time from the router's callbacks (settable after construction)."""

    def __init__(
        self,
        instances: Callable[[], Iterable[InstanceRow]] | None,
        admission: Callable[[], tuple[int, int]] | None,
    ) -> None:
        self.instances = instances
        self.admission = admission

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        labels = ["instance", "role"]
        return (
            GaugeMetricFamily("fdrouter_instance_in_flight_requests",
                              "Requests the router has in flight on the instance.", labels=labels),
            GaugeMetricFamily("fdrouter_instance_in_flight_tokens",
                              "Estimated prompt tokens of the requests in flight on the instance.", labels=labels),
            GaugeMetricFamily("fdrouter_instance_healthy",
                              "1 if health checks let the instance get traffic, else 0.", labels=labels),
            GaugeMetricFamily("fdrouter_instance_circuit_state",
                              "Circuit breaker state: 0 closed, 1 half-open, 2 open.", labels=labels),
            GaugeMetricFamily("fdrouter_admission_active", "Generation requests admitted and running."),
            GaugeMetricFamily("fdrouter_admission_queued", "Generation requests waiting for an admission slot."),
        )

    def describe(self) -> Iterator[Metric]:
        # lets the registry refuse a second collector with the same names, without a scrape
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        in_flight, tokens, healthy, circuit, active, queued = self._families()
        if self.instances is not None:
            for row in self.instances():
                labels = [row.url, row.role]
                in_flight.add_metric(labels, row.in_flight)
                tokens.add_metric(labels, row.in_flight_tokens)
                healthy.add_metric(labels, 1 if row.healthy else 0)
                circuit.add_metric(labels, row.circuit)
            yield from (in_flight, tokens, healthy, circuit)
        if self.admission is not None:
            n_active, n_queued = self.admission()
            active.add_metric([], n_active)
            queued.add_metric([], n_queued)
            yield from (active, queued)


class RouterMetrics:
    """The metrics of one router, in ``self.registry``; nothing is registered globally.

    ``instances`` returns one ``InstanceRow`` per registered instance and ``admission`` returns
    ``(active, queued)``; both are called at scrape time only, on the thread that renders (the
    event loop, for ``GET /metrics``). Leave either out to omit its gauges, or ``bind`` it later.
    """

    def __init__(
        self,
        *,
        instances: Callable[[], Iterable[InstanceRow]] | None = None,
        admission: Callable[[], tuple[int, int]] | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fdrouter_requests", "Generation requests answered, by HTTP status and instance "
                                "(instance is empty when none was chosen).",
                                ["endpoint", "status", "instance"], registry=r)
        self.request_duration = Histogram("fdrouter_request_duration_seconds",
                                          "Time from receiving a generation request to its last byte.",
                                          ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.time_to_first_token = Histogram("fdrouter_time_to_first_token_seconds",
                                             "Time from receiving a generation request to its first body byte "
                                             "sent to the client.",
                                             ["endpoint"], buckets=TTFT_BUCKETS, registry=r)
        self.retries = Counter("fdrouter_retries", "Requests retried on another instance, by reason.",
                               ["reason"], registry=r)
        self.upstream_errors = Counter("fdrouter_upstream_errors", "Failed upstream legs, by instance and kind.",
                                       ["instance", "kind"], registry=r)
        self.admission_rejected = Counter("fdrouter_admission_rejected",
                                          "Requests answered 429 by admission control, by reason.",
                                          ["reason"], registry=r)
        self.pd_reschedules = Counter("fdrouter_pd_reschedules",
                                      "PD requests the decode instance preempted (finish_reason pd_reschedule "
                                      "or a PD Error), each rescheduled unless past --preempt-retry-count.",
                                      ["instance"], registry=r)
        self._live = _LiveCollector(instances, admission)
        r.register(self._live)
        # a worker of a multi-process router: every process's events are aggregated at scrape time
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if process_metrics and self._multiprocess_dir is None:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        # label children cached by label values: .labels() validates and locks on every call
        self._requests: dict[tuple[str, int, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._ttfts: dict[str, Histogram] = {}
        self._retries: dict[str, Counter] = {}
        self._upstream: dict[tuple[str, str], Counter] = {}
        self._rejected: dict[str, Counter] = {}
        self._reschedules: dict[str, Counter] = {}

    # -- hot path ------------------------------------------------------------------------

    def observe_request(
        self, endpoint: str, status: int, *, duration_secs: float, ttft_secs: float | None = None, instance: str = ""
    ) -> None:
        """Count one finished generation request and observe its latencies.

        ``status`` is what the request ended with: for a stream that broke after its 200
        headers, the error's status. ``ttft_secs`` only if a body byte reached the client;
        ``instance`` is the one that answered ("" if none was chosen, e.g. a 429 or 503).
        """
        key = (endpoint, status, instance)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(endpoint, str(status), instance)
        child.inc()
        hist = self._durations.get(endpoint)
        if hist is None:
            hist = self._durations[endpoint] = self.request_duration.labels(endpoint)
        hist.observe(duration_secs)
        if ttft_secs is not None:
            hist = self._ttfts.get(endpoint)
            if hist is None:
                hist = self._ttfts[endpoint] = self.time_to_first_token.labels(endpoint)
            hist.observe(ttft_secs)

    def observe_retry(self, reason: str) -> None:
        """Count one retry (reason e.g. ``connect``, ``timeout``, ``status_503``)."""
        child = self._retries.get(reason)
        if child is None:
            child = self._retries[reason] = self.retries.labels(reason)
        child.inc()

    def observe_upstream_error(self, instance: str, kind: str) -> None:
        """Count one failed upstream leg (kind e.g. ``connect``, ``timeout``, ``broken``, ``status_5xx``)."""
        key = (instance, kind)
        child = self._upstream.get(key)
        if child is None:
            child = self._upstream[key] = self.upstream_errors.labels(instance, kind)
        child.inc()

    def observe_rejection(self, reason: str) -> None:
        """Count one 429 from admission control (``TooManyRequests.reason``)."""
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self.admission_rejected.labels(reason)
        child.inc()

    def observe_reschedule(self, instance: str) -> None:
        """Count one request preempted by the decode instance ``instance``."""
        child = self._reschedules.get(instance)
        if child is None:
            child = self._reschedules[instance] = self.pd_reschedules.labels(instance)
        child.inc()

    # -- lifecycle -----------------------------------------------------------------------

    def bind(
        self,
        *,
        instances: Callable[[], Iterable[InstanceRow]] | None = None,
        admission: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """Set the scrape-time sources after construction (the router may be built after its metrics)."""
        if instances is not None:
            self._live.instances = instances
        if admission is not None:
            self._live.admission = admission

    def forget_instance(self, url: str) -> None:
        """Drop every labelled series of a deregistered instance, so churn cannot grow the scrape forever."""
        for key in [k for k in self._requests if k[2] == url]:
            del self._requests[key]
            self.requests.remove(key[0], str(key[1]), key[2])
        for upstream_key in [k for k in self._upstream if k[0] == url]:
            del self._upstream[upstream_key]
            self.upstream_errors.remove(*upstream_key)
        if self._reschedules.pop(url, None) is not None:
            self.pd_reschedules.remove(url)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=self._multiprocess_dir)
        combined.register(self._live)
        return generate_latest(combined), CONTENT_TYPE_LATEST


__all__ = ["LATENCY_BUCKETS", "TTFT_BUCKETS", "InstanceRow", "RouterMetrics"]
