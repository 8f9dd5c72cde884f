"""The report's ratios mean what the benchmark's docstring says they mean."""

from __future__ import annotations

import re

import pytest
from fdbench.report import build_table, target_checks
from fdbench.results import Result
from fdbench.targets import AIOHTTP_POOL, BASELINE, DIRECT, FDROUTER
from fdbench.workload import C1, C64, S32


def result(target: str, scenario: str, *, rps: float, p50_ms: float, proxy_us: float | None) -> Result:
    """A result of 1000 requests at ``rps``, every latency ``p50_ms``, ``proxy_us`` proxy CPU per request."""
    r = Result(target, scenario, 64 if scenario == C64 else 1, False, generator="wrk", requests=1000,
               seconds=1000 / rps, backend_cpu=0.1, latencies=[p50_ms / 1000] * 1000)
    r.proxy_cpu = None if proxy_us is None else proxy_us * 1000 / 1e6
    return r


RESULTS = [
    result(DIRECT, C1, rps=8000, p50_ms=0.100, proxy_us=None),
    result(FDROUTER, C1, rps=2500, p50_ms=0.400, proxy_us=220),
    result(AIOHTTP_POOL, C1, rps=1700, p50_ms=0.550, proxy_us=360),
    result(BASELINE, C1, rps=1000, p50_ms=0.900, proxy_us=650),
    result(DIRECT, C64, rps=9000, p50_ms=5.0, proxy_us=None),
    result(FDROUTER, C64, rps=6000, p50_ms=8.0, proxy_us=150),
    result(AIOHTTP_POOL, C64, rps=3000, p50_ms=15.0, proxy_us=300),
    result(BASELINE, C64, rps=2000, p50_ms=26.0, proxy_us=480),
    result(FDROUTER, S32, rps=3900, p50_ms=7.0, proxy_us=200),
    result(AIOHTTP_POOL, S32, rps=2400, p50_ms=12.0, proxy_us=250),
]


def row(table: str, target: str, scenario: str) -> list[str]:
    """The numbers of one row; cells are at least two spaces apart, names hold single spaces."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    return next(cells[2:] for cells in rows if cells[:2] == [target, scenario])


def test_the_table_gives_throughput_over_the_baseline_and_p50_added_over_direct():
    table = build_table(RESULTS)
    # req/s p50 p99 ttfb50 ttfb99 errors requests x-baseline +p50 cpu mock
    assert row(table, FDROUTER, C64)[7:10] == ["3.00x", "+3.000", "150"]
    assert row(table, BASELINE, C64)[7] == "1.00x"
    assert row(table, DIRECT, C1)[7:10] == ["8.00x", "-", "-"]
    assert row(table, AIOHTTP_POOL, C1)[7:9] == ["1.70x", "+0.450"]


def test_the_checks_compare_fdrouter_with_the_baseline_direct_and_aiohttp_s_pool():
    lines, checks = target_checks(RESULTS)
    assert checks["throughput_ratio_c64"] == {"value": 3.0, "target": 2.5, "ok": True}
    assert checks["added_p50_ms_c1"]["value"] == pytest.approx(0.3) and checks["added_p50_ms_c1"]["ok"]
    pool = checks["generation_pool_vs_aiohttp"]
    assert pool["throughput_ratio"][C64] == 2.0 and pool["cpu_ratio"][C64] == 2.0
    assert pool["cpu_ratio"][S32] == 1.25 and pool["cpu_ratio_mean"] == pytest.approx((2.0 * 1.25) ** 0.5, abs=1e-3)
    assert pool["ok"]
    assert any(line.startswith("generation pool") and line.endswith("PASS") for line in lines)


def test_the_pool_check_misses_when_the_hand_written_pool_saves_under_ten_percent():
    close = [r for r in RESULTS if r.target != AIOHTTP_POOL]
    close.append(result(AIOHTTP_POOL, C64, rps=5900, p50_ms=8.1, proxy_us=160))
    lines, checks = target_checks(close)
    # no stream c32 row for it here: the mean is the c64 ratio alone
    assert checks["generation_pool_vs_aiohttp"]["cpu_ratio_mean"] == pytest.approx(160 / 150, abs=1e-3)
    assert not checks["generation_pool_vs_aiohttp"]["ok"]
    assert any("reconsider" in line and line.endswith("MISS") for line in lines)


def test_without_the_aiohttp_row_there_is_no_pool_check():
    _, checks = target_checks([r for r in RESULTS if r.target != AIOHTTP_POOL])
    assert "generation_pool_vs_aiohttp" not in checks
