"""What one target did in one scenario, pooled over its measured rounds."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .cpu import add_delta, per_request_us
from .latency import histogram_samples, percentile, weighted_percentile
from .wrk_output import WrkRun

CpuSample = tuple[float | None, float | None]
"""(before, after) CPU seconds of one process around a round; None where it could not be read."""


@dataclass
class Result:
    """What one target did in one scenario, over all its rounds."""

    target: str
    scenario: str
    concurrency: int
    stream: bool
    generator: str = "python"
    requests: int = 0
    """Completed requests with a 2xx answer (the Python generator: also a whole stream)."""
    errors: int = 0
    seconds: float = 0.0
    proxy_cpu: float | None = None
    """CPU seconds the proxy process (user + system) spent in the measured rounds; None for direct."""
    backend_cpu: float | None = None
    """CPU seconds the mock backend spent in the measured rounds."""
    generator_cpu: float = 0.0
    """CPU seconds the load generator spent in the measured rounds."""
    outside_load: float | None = None
    """Fraction of the machine's CPU that other processes used during the scenario."""
    steal: float | None = None
    """Fraction of the machine's CPU the hypervisor took (steal time) during the scenario."""
    bytes_read: int | None = None
    """Response bytes (headers included) the generator read; wrk only, to spot cut or odd answers."""
    latencies: list[float] = field(default_factory=list, repr=False)
    ttfbs: list[float] = field(default_factory=list, repr=False)
    round_percentiles: list[tuple[int, dict[int, float]]] = field(default_factory=list, repr=False)
    """(requests, {pct: seconds}) per wrk round, used only when wrk gave no histogram to pool."""

    @property
    def rps(self) -> float:
        """Completed requests per second of measured time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cpu_us(self, seconds: float | None) -> float | None:
        """CPU microseconds per completed request, from a CPU-seconds total."""
        return per_request_us(seconds, self.requests)

    def latency(self, pct: int) -> float | None:
        """The ``pct`` latency percentile in seconds over all rounds, or None without samples."""
        if self.latencies:
            return percentile(self.latencies, pct)
        return weighted_percentile(self.round_percentiles, pct)

    def ttfb(self, pct: int) -> float | None:
        """The ``pct`` time-to-first-byte percentile in seconds; None when not measured (wrk)."""
        return percentile(self.ttfbs, pct)

    def add_server_cpu(self, proxy: CpuSample, backend: CpuSample) -> None:
        """Add one round's CPU time of the proxy and the mock backend."""
        self.proxy_cpu = add_delta(self.proxy_cpu, *proxy)
        self.backend_cpu = add_delta(self.backend_cpu, *backend)

    def add_wrk_round(self, run: WrkRun, *, proxy: CpuSample = (None, None),
                      backend: CpuSample = (None, None)) -> None:
        """Pool one wrk run into this result: counts add up, latency samples join the others."""
        self.requests += run.ok
        self.errors += run.errors
        self.seconds += run.seconds
        self.bytes_read = (self.bytes_read or 0) + run.bytes_read
        if run.histogram is not None:
            self.latencies.extend(histogram_samples(run.histogram))
        else:
            self.round_percentiles.append((run.ok, run.percentiles))
        self.add_server_cpu(proxy, backend)
        self.generator_cpu += run.cpu

    def summary(self) -> dict:
        """The JSON-friendly numbers (milliseconds), without the raw samples."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        for name in ("seconds", "proxy_cpu", "backend_cpu", "generator_cpu", "outside_load", "steal"):
            out[name] = rounded(out[name], 4)
        out["rps"] = round(self.rps, 1)
        out["proxy_cpu_us_per_request"] = rounded(self.cpu_us(self.proxy_cpu), 1)
        out["backend_cpu_us_per_request"] = rounded(self.cpu_us(self.backend_cpu), 1)
        out["generator_cpu_us_per_request"] = rounded(self.cpu_us(self.generator_cpu), 1)
        out["p50_ms"], out["p99_ms"] = ms(self.latency(50)), ms(self.latency(99))
        if self.stream:
            out["ttfb_p50_ms"], out["ttfb_p99_ms"] = ms(self.ttfb(50)), ms(self.ttfb(99))
        return out


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds to the microsecond; None stays None."""
    return None if seconds is None else round(seconds * 1000, 3)


def rounded(value: float | None, digits: int) -> float | None:
    """``round`` that lets None through."""
    return None if value is None else round(value, digits)


__all__ = ["CpuSample", "Result", "ms", "rounded"]
