"""Latency statistics: percentiles over pooled samples, and wrk's histogram turned back into samples.

wrk reports latency after a coordinated-omission correction meant for open-loop (scheduled)
load. The benchmark's load is closed-loop, so ``undo_wrk_correction`` takes the added samples
out again; what is left is one sample per response, which pools across rounds exactly like
the Python generator's own measurements.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def percentile(samples: list[float], pct: float) -> float | None:
    """Linear-interpolated percentile (``pct`` in 1..99), or None without samples."""
    if not samples:
        return None
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


def histogram_samples(histogram: dict[int, int]) -> list[float]:
    """A microseconds -> count histogram as a list of samples in seconds (what percentile() takes)."""
    samples: list[float] = []
    for us in sorted(histogram):
        samples.extend([us / 1e6] * histogram[us])
    return samples


def weighted_percentile(rounds: Iterable[tuple[int, dict[int, float]]], pct: int) -> float | None:
    """The request-weighted mean of per-round percentiles: the fallback when wrk gave no histogram.

    ``rounds`` holds (requests, {pct: seconds}) per round. Not a true percentile of the pooled
    samples (those are gone), but close when the rounds are alike, which interleaving aims for.
    """
    pairs = [(n, pcts[pct]) for n, pcts in rounds if n and pct in pcts]
    total = sum(n for n, _ in pairs)
    return sum(n * value for n, value in pairs) / total if total else None


def undo_wrk_correction(hist: dict[int, int], duration_us: int, responses: int, connections: int) -> dict[int, int]:
    """Remove the samples wrk 4.x's ``stats_correct`` added to its latency histogram.

    Before reporting, wrk assumes each connection meant to send a request every
    ``expected = runtime / (responses / connections)`` microseconds and, for every sample
    ``n >= 2 * expected``, adds phantom samples at ``n - expected``, ``n - 2 * expected``, ...
    while they stay above ``expected`` (coordinated-omission correction, wrk.c ``stats_correct``).
    A closed loop has no such schedule, and the phantoms would count a slow answer several
    times, so they are taken out again: the bucket ``m > expected`` received one copy of every
    original sample at ``m + k * expected`` (k >= 1), so walking the buckets from the top, each
    residue class modulo ``expected`` carries the running sum of the originals above.
    """
    per_connection = responses // connections  # C's integer divisions, as in wrk.c
    if per_connection <= 0 or not hist:
        return dict(hist)
    expected = duration_us // per_connection
    if expected <= 0:
        return dict(hist)
    raw: dict[int, int] = {}
    above: dict[int, int] = {}  # residue modulo expected -> original samples in higher buckets
    for us in sorted(hist, reverse=True):
        residue = us % expected
        count = hist[us] - above.get(residue, 0) if us > expected else hist[us]
        if count > 0:
            raw[us] = count
        above[residue] = above.get(residue, 0) + max(count, 0)
    return raw


__all__ = ["histogram_samples", "percentile", "undo_wrk_correction", "weighted_percentile"]
