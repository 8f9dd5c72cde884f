"""The printed report: the results table, what its columns mean, and the goal checks below it."""

from __future__ import annotations

import math
import os
import platform

from .results import Result, ms, rounded
from .targets import AIOHTTP_FRONT, AIOHTTP_POOL, BASELINE, DIRECT, FDROUTER, SGLANG, TARGET_ORDER
from .workload import C1, C64, S32, SCENARIOS

THROUGHPUT_GOAL = 2.5
"""fdrouter's req/s at c64 over the baseline's. A minimal proxy measured ~2.6x for a shared session over a
per-request one with a minimal proxy: fdrouter, which does more per request, must keep that."""
ADDED_P50_GOAL_MS = 0.5
"""What fdrouter may add to the p50 latency of one request at a time (c1), in milliseconds."""
POOL_MARGIN = 1.10
"""The hand-written generation pool must save at least 10% of proxy CPU per request over aiohttp's client
(geometric mean over non-stream c64 and stream c32) to be worth keeping. A judgement, not a measurement:
a hand-written HTTP client is worth its upkeep only for a clear saving, and CPU per request is the number
outside load disturbs least."""

LEGEND = """\
x baseline: the row's req/s over the baseline's in the same scenario (throughput gained over a proxy that
            opens a new connection per request).
+p50 ms:    the row's p50 minus direct's p50 in the same scenario: the latency the proxy adds.
cpu us/req: CPU time of the proxy per answered request (user + system from /proc, summed over its process
            tree: a supervisor and its workers); moves much less with outside load than req/s does.
            mock us/req: the same for the mock backend."""


def fmt(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def build_table(results: list[Result]) -> str:
    """The results table, with throughput vs the baseline and p50 added over direct."""
    by_key = {(r.target, r.scenario): r for r in results}
    header = ["target", "scenario", "req/s", "p50 ms", "p99 ms", "ttfb p50", "ttfb p99", "errors", "requests",
              "x baseline", "+p50 ms", "cpu us/req", "mock us/req"]
    rows = []
    for scenario in SCENARIOS:
        base = by_key.get((BASELINE, scenario.name))
        direct = by_key.get((DIRECT, scenario.name))
        for target in TARGET_ORDER:
            r = by_key.get((target, scenario.name))
            if r is None:
                continue
            p50 = r.latency(50)
            ratio = r.rps / base.rps if base is not None and base.rps > 0 else None
            direct_p50 = direct.latency(50) if direct is not None else None
            added = (p50 - direct_p50) * 1000 if p50 is not None and direct_p50 is not None else None
            rows.append([
                target, scenario.name, f"{r.rps:.0f}", fmt(ms(p50)), fmt(ms(r.latency(99))),
                fmt(ms(r.ttfb(50))), fmt(ms(r.ttfb(99))),
                str(r.errors), str(r.requests), fmt(ratio, ".2f") + ("x" if ratio is not None else ""),
                "-" if target == DIRECT else fmt(added, "+.3f"),
                fmt(r.cpu_us(r.proxy_cpu), ".0f"), fmt(r.cpu_us(r.backend_cpu), ".0f"),
            ])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    left = {0, 1}  # names left-aligned, numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "-" * len(line(header))
    out, last = [line(header), rule], None
    for row in rows:
        if last is not None and row[1] != last:
            out.append("")
        out.append(line(row))
        last = row[1]
    return "\n".join(out)


class _Lookup:
    """Numbers by (target, scenario), None where a target or its samples are missing."""

    def __init__(self, results: list[Result]) -> None:
        self.by_key = {(r.target, r.scenario): r for r in results}

    def rps(self, target: str, scenario: str) -> float | None:
        r = self.by_key.get((target, scenario))
        return r.rps if r is not None and r.requests else None

    def p50(self, target: str, scenario: str) -> float | None:
        r = self.by_key.get((target, scenario))
        return r.latency(50) if r is not None else None

    def cpu_us(self, target: str, scenario: str) -> float | None:
        r = self.by_key.get((target, scenario))
        return r.cpu_us(r.proxy_cpu) if r is not None else None

    def path_cpu_us(self, target: str, scenario: str) -> float | None:
        # generator + proxy + mock: what one request costs the cores that all of them share
        r = self.by_key.get((target, scenario))
        if r is None or r.proxy_cpu is None or r.backend_cpu is None:
            return None
        return r.cpu_us(r.proxy_cpu + r.backend_cpu + r.generator_cpu)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def target_checks(results: list[Result]) -> tuple[list[str], dict]:
    """The two goals, the generation-pool re-check and the peer comparison, as lines and as data."""
    at = _Lookup(results)
    lines, checks = [], {}
    ratio = _ratio(at.rps(FDROUTER, C64), at.rps(BASELINE, C64))
    ok = ratio is not None and ratio >= THROUGHPUT_GOAL
    checks["throughput_ratio_c64"] = {"value": rounded(ratio, 3), "target": THROUGHPUT_GOAL, "ok": ok}
    lines.append(f"fdrouter/baseline throughput @c64: {fmt(ratio, '.2f')}x (goal >= {THROUGHPUT_GOAL}x) "
                 f"{'PASS' if ok else 'MISS'}")
    cpu = {t: at.cpu_us(t, C64) for t in (FDROUTER, AIOHTTP_POOL, BASELINE, SGLANG)}
    path = {t: at.path_cpu_us(t, C64) for t in (FDROUTER, AIOHTTP_POOL, BASELINE, SGLANG)}
    fd_cpu, base_cpu, fd_path, base_path = cpu[FDROUTER], cpu[BASELINE], path[FDROUTER], path[BASELINE]
    if fd_cpu and base_cpu and fd_path and base_path:
        # the same comparison in the unit that outside load disturbs least
        checks["cpu_us_per_request_c64"] = {t: rounded(v, 1) for t, v in cpu.items() if v is not None}
        checks["path_cpu_us_per_request_c64"] = {t: rounded(v, 1) for t, v in path.items() if v is not None}
        lines.append(f"  CPU per request @c64, baseline/fdrouter: proxy {base_cpu:.0f}/{fd_cpu:.0f} us"
                     f" = {base_cpu / fd_cpu:.2f}x; whole path (generator + proxy + mock)"
                     f" {base_path:.0f}/{fd_path:.0f} us = {base_path / fd_path:.2f}x"
                     + (f"; sglang-router proxy {cpu[SGLANG]:.0f} us" if cpu[SGLANG] else ""))
    fd_p50, direct_p50 = at.p50(FDROUTER, C1), at.p50(DIRECT, C1)
    added = (fd_p50 - direct_p50) * 1000 if fd_p50 is not None and direct_p50 is not None else None
    ok = added is not None and added <= ADDED_P50_GOAL_MS
    checks["added_p50_ms_c1"] = {"value": rounded(added, 3), "target": ADDED_P50_GOAL_MS, "ok": ok}
    lines.append(f"router-added p50 @c1: {fmt(added, '.3f')} ms (goal <= {ADDED_P50_GOAL_MS} ms) "
                 f"{'PASS' if ok else 'MISS'}")
    if (AIOHTTP_FRONT, C64) in at.by_key:
        lines.append(_front_line(at, checks))
    if (AIOHTTP_POOL, C64) in at.by_key:
        lines.extend(_pool_check(at, checks))
    if (SGLANG, C64) in at.by_key:
        peer_ratio = _ratio(at.rps(FDROUTER, C64), at.rps(SGLANG, C64))
        peer_p50 = at.p50(SGLANG, C1)
        peer_added = (peer_p50 - direct_p50) * 1000 if peer_p50 is not None and direct_p50 is not None else None
        checks["vs_sglang"] = {"throughput_ratio_c64": rounded(peer_ratio, 3),
                               "sglang_added_p50_ms_c1": rounded(peer_added, 3)}
        lines.append(f"fdrouter/sglang-router throughput @c64: {fmt(peer_ratio, '.2f')}x "
                     f"(sglang-router-added p50 @c1: {fmt(peer_added, '.3f')} ms; goal: match the peer)")
    return lines, checks


def _front_line(at: _Lookup, checks: dict) -> str:
    """What the lean front end (front.py) saves over aiohttp's server, for the same router: a report, no goal."""
    cpu = {s: (at.cpu_us(FDROUTER, s), at.cpu_us(AIOHTTP_FRONT, s)) for s in (C64, S32)}
    direct_p50 = at.p50(DIRECT, C1)
    added = {t: (p50 - direct_p50) * 1000 if (p50 := at.p50(t, C1)) is not None and direct_p50 is not None
             else None for t in (FDROUTER, AIOHTTP_FRONT)}
    checks["front_vs_aiohttp"] = {
        "cpu_us": {s: {"lean": rounded(lean, 1), "aiohttp": rounded(aio, 1)} for s, (lean, aio) in cpu.items()},
        "added_p50_ms_c1": {"lean": rounded(added[FDROUTER], 3), "aiohttp": rounded(added[AIOHTTP_FRONT], 3)}}
    parts = [f"{fmt(lean, '.0f')}/{fmt(aio, '.0f')} us @{s}" for s, (lean, aio) in cpu.items()]
    return (f"front end, lean/aiohttp: proxy CPU per request {', '.join(parts)}; router-added p50 @c1 "
            f"{fmt(added[FDROUTER], '.3f')}/{fmt(added[AIOHTTP_FRONT], '.3f')} ms")


def _pool_check(at: _Lookup, checks: dict) -> list[str]:
    """Does the hand-written generation pool (Http1Pool) still beat aiohttp's client in the same router?"""
    throughput = {s: _ratio(at.rps(FDROUTER, s), at.rps(AIOHTTP_POOL, s)) for s in (C64, S32)}
    cpu = {s: _ratio(at.cpu_us(AIOHTTP_POOL, s), at.cpu_us(FDROUTER, s)) for s in (C64, S32)}
    # judged on both loaded scenarios (geometric mean), so one noisy scenario does not flip the verdict
    measured = [v for v in cpu.values() if v is not None]
    saving = math.prod(measured) ** (1 / len(measured)) if measured else None
    keep = saving is not None and saving >= POOL_MARGIN
    checks["generation_pool_vs_aiohttp"] = {
        "throughput_ratio": {s: rounded(v, 3) for s, v in throughput.items()},
        "cpu_ratio": {s: rounded(v, 3) for s, v in cpu.items()}, "cpu_ratio_mean": rounded(saving, 3),
        "margin": POOL_MARGIN, "ok": keep}
    verdict = ("keep it" if keep else
               f"it saves less than {POOL_MARGIN - 1:.0%}: reconsider it (fdrouter/generation_pool.py says why it "
               "exists)")
    return [f"generation pool, Http1Pool over aiohttp's ClientSession: throughput {fmt(throughput[C64], '.2f')}x "
            f"@c64, {fmt(throughput[S32], '.2f')}x @{S32}; aiohttp's proxy CPU per request {fmt(cpu[C64], '.2f')}x "
            f"@c64, {fmt(cpu[S32], '.2f')}x @{S32}, mean {fmt(saving, '.2f')}x (goal >= {POOL_MARGIN:.2f}x: "
            f"{verdict}) {'PASS' if keep else 'MISS'}"]


def environment(aiohttp_version: str, uvloop_version: str | None) -> dict:
    """What the numbers depend on, printed above the table and stored in --json."""
    try:
        from fdrouter import jsonutil

        json_backend = jsonutil.BACKEND
    except ImportError:
        json_backend = "?"
    return {
        "python": platform.python_version(),
        "aiohttp": aiohttp_version,
        "uvloop": uvloop_version,
        "fdrouter_json": json_backend,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


__all__ = ["ADDED_P50_GOAL_MS", "LEGEND", "POOL_MARGIN", "THROUGHPUT_GOAL", "build_table", "environment", "fmt",
           "target_checks"]
