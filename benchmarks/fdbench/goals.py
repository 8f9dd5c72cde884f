"""The targets block at the end of the report: each target of the ``--workers`` / leaner-hot-path issue, judged.

One line per target: the figure(s) of this run, the threshold (and the figure the issue started
from), and ``met`` / ``NOT met`` / ``not measured``. A report, never an exit status. Ratios use
rows of the same run only, because wrk, the mock and the routers share the machine's two cores:
absolute requests/s follow whatever else runs, their ratios far less. A peer that did not run is
named on its line ("vllm-router not installed") instead of a ratio.

Everything here is pure: it reads the ``--json`` shaped summaries (``Result.summary()``,
``StreamsResult.summary()``), so it is tested on a results dict.
"""

from __future__ import annotations

from dataclasses import dataclass

from .targets import DIRECT, FDROUTER, FDROUTER_W2, SGLANG, VLLM
from .workload import C1, C64, S32

CPU_C64_US, CPU_C64_WAS = 90.0, 134.0
"""Router CPU per non-streamed request at 64 concurrent (µs): the target, and the issue's measurement before it."""
CPU_S32_US, CPU_S32_WAS = 110.0, 145.0
"""The same for streams at 32 concurrent, 17 events per answer."""
ADDED_P50_MS, ADDED_P50_WAS = 0.120, "0.19-0.23"
"""What fdrouter may add to the p50 of one request at a time (c1), over direct."""
W2_VS_VLLM_C64, W2_VS_VLLM_S32 = 0.6, 1.0
"""``--workers 2`` requests/s over vllm-router's: non-streamed c64, streamed c32."""
STREAMS_TARGET, RSS_PER_STREAM_KB, RSS_WAS = 8000, 25.0, "25.6 (vllm-router 81)"
"""The memory scenario: this many 16 s streams all complete through ``--workers 1``, at most this many KB each."""

# vllm-router's figures in the measurement the absolute targets were set against (the issue's
# table: c64 48 µs of CPU per request, streams 135 µs, p50 at c1 194 µs over direct's 141 µs).
# CPU per request and added latency follow the whole rig's speed (a slower mock or host means
# fewer requests per event-loop wake-up, so more CPU per request, for every router alike), so
# each absolute target is also judged scaled by how far vllm-router moved between that day and
# this run: a yardstick measured in the same run as fdrouter.
VLLM_WHEN_SET = {"cpu " + C64: 48.0, "cpu " + S32: 135.0, "p50": 0.194 - 0.141}


@dataclass
class Goal:
    """One line of the block."""

    name: str
    figure: str
    threshold: str
    met: bool | None
    """None: not measured (a row or a peer missing)."""
    scaled: str = ""
    """For an absolute target: the same target scaled by vllm-router's move since it was set (see VLLM_WHEN_SET)."""
    scaled_met: bool | None = None

    @property
    def verdict(self) -> str:
        """``met``, ``NOT met`` or ``not measured``."""
        return "not measured" if self.met is None else "met" if self.met else "NOT met"

    def line(self) -> str:
        """The printed line."""
        line = f"{self.name}: {self.figure}; target {self.threshold}: {self.verdict}"
        return f"{line}\n    {self.scaled}" if self.scaled else line


class _Rows:
    """Numbers by (target, scenario) from the summaries; None where missing."""

    def __init__(self, results: list[dict]) -> None:
        self.by_key = {(r["target"], r["scenario"]): r for r in results}

    def get(self, target: str, scenario: str, key: str) -> float | None:
        row = self.by_key.get((target, scenario))
        return None if row is None or not row.get("requests") else row.get(key)

    def cpu(self, target: str, scenario: str) -> float | None:
        return self.get(target, scenario, "proxy_cpu_us_per_request")

    def rps(self, target: str, scenario: str) -> float | None:
        return self.get(target, scenario, "rps")

    def added_p50(self, target: str) -> float | None:
        mine, direct = self.get(target, C1, "p50_ms"), self.get(DIRECT, C1, "p50_ms")
        return None if mine is None or direct is None else mine - direct


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _peer_figures(rows: _Rows, scenario: str, key: str, spec: str, unit: str, missing: dict[str, str]) -> str:
    parts = []
    for peer in (SGLANG, VLLM):
        value = rows.get(peer, scenario, key)
        parts.append(f"{peer} {missing[peer]}" if peer in missing and value is None else
                     f"{peer} {_num(value, spec)}{unit}")
    return "; ".join(parts)


def _cpu_goal(rows: _Rows, scenario: str, limit: float, was: float, missing: dict[str, str]) -> Goal:
    fd = rows.cpu(FDROUTER, scenario)
    figure = (f"fdrouter {_num(fd, '.0f')} us/req (×2 workers {_num(rows.cpu(FDROUTER_W2, scenario), '.0f')}; "
              f"{_peer_figures(rows, scenario, 'proxy_cpu_us_per_request', '.0f', '', missing)})")
    return Goal(f"router CPU per request, {scenario}", figure, f"<= {limit:g} us (was {was:g})",
                None if fd is None else fd <= limit,
                *_scaled(fd, limit, rows.cpu(VLLM, scenario), VLLM_WHEN_SET["cpu " + scenario], ".0f", " us"))


def _ratio_goal(rows: _Rows, scenario: str, limit: float, missing: dict[str, str]) -> Goal:
    w2, w1 = rows.rps(FDROUTER_W2, scenario), rows.rps(FDROUTER, scenario)
    vllm, sglang = rows.rps(VLLM, scenario), rows.rps(SGLANG, scenario)
    name = f"×2 workers req/s over vllm-router's, {scenario}"
    threshold = f">= {limit:g}x, same run"
    if vllm is None:
        why = f"{VLLM} {missing.get(VLLM, 'has no row')}"
        return Goal(name, f"{why}: no ratio (×2 workers {_num(w2, '.0f')} req/s)", threshold, None)
    ratio = w2 / vllm if w2 is not None and vllm else None
    extra = [f"1 worker {_num(w1 / vllm if w1 else None, '.2f')}x"]
    extra.append(f"×2 workers over sglang-router {_num(w2 / sglang, '.2f')}x" if w2 and sglang else
                 f"sglang-router {missing.get(SGLANG, 'no row')}")
    figure = (f"{_num(ratio, '.2f')}x ({_num(w2, '.0f')} / {vllm:.0f} req/s; {', '.join(extra)})")
    return Goal(name, figure, threshold, None if ratio is None else ratio >= limit)


def _p50_goal(rows: _Rows) -> Goal:
    added = rows.added_p50(FDROUTER)
    peers = ", ".join(f"{p} {_num(rows.added_p50(p), '+.3f')}" for p in (FDROUTER_W2, SGLANG, VLLM)
                      if rows.added_p50(p) is not None)
    figure = f"fdrouter +{_num(added, '.3f')} ms" + (f" ({peers} ms)" if peers else "")
    return Goal("router-added p50 over direct, non-stream c1", figure,
                f"<= {ADDED_P50_MS:g} ms (was {ADDED_P50_WAS} ms)", None if added is None else added <= ADDED_P50_MS,
                *_scaled(added, ADDED_P50_MS, rows.added_p50(VLLM), VLLM_WHEN_SET["p50"], ".3f", " ms"))


def _scaled(mine: float | None, limit: float, vllm_now: float | None, vllm_then: float, spec: str,
            unit: str) -> tuple[str, bool | None]:
    """The absolute target scaled by vllm-router's figure now over its figure when the target was set:
    the line and its verdict (``("", None)`` without a vllm-router row)."""
    if mine is None or vllm_now is None or vllm_now <= 0:
        return "", None
    factor = vllm_now / vllm_then
    scaled = limit * factor
    verdict = "met" if mine <= scaled else "NOT met"
    return (f"scaled by vllm-router ({format(vllm_then, spec)}{unit} when set, {format(vllm_now, spec)}{unit} "
            f"in this run: x{factor:.2f}): <= {format(scaled, spec)}{unit}: {verdict} "
            f"(fdrouter / vllm-router {mine / vllm_now:.2f}x)"), mine <= scaled


def _memory_goal(streams: list[dict], skipped: str | None, missing: dict[str, str]) -> Goal:
    name = "concurrent 16 s streams through --workers 1"
    threshold = f"{STREAMS_TARGET} all complete at <= {RSS_PER_STREAM_KB:g} KB/stream (was {RSS_WAS})"
    by_target = {s["target"]: s for s in streams}
    fd = next((s for t, s in by_target.items() if t.startswith(FDROUTER)), None)
    if fd is None:
        return Goal(name, skipped or "not run", threshold, None)
    per = fd["rss_per_stream_kb"]
    figure = (f"{fd['completed']}/{fd['streams']} completed, {fd['peak_open']} open at once, "
              f"{_num(per, '.1f')} KB/stream")
    vllm = by_target.get(VLLM)
    if vllm is not None and vllm.get("rss_per_stream_kb") is not None:
        figure += (f" (vllm-router: {vllm['completed']}/{vllm['streams']} completed, {vllm['peak_open']} open at once, "
                   f"{vllm['rss_per_stream_kb']:.1f} KB/stream)")
    elif vllm is not None:
        figure += f" (vllm-router: {vllm.get('note') or 'not measured'})"
    else:
        figure += f" (vllm-router {missing.get(VLLM, 'not run')})"
    met = (fd["streams"] >= STREAMS_TARGET and fd["completed"] == fd["streams"]
           and per is not None and per <= RSS_PER_STREAM_KB)
    if fd["streams"] < STREAMS_TARGET:
        figure += f"; only {fd['streams']} streams asked for (--streams)"
    return Goal(name, figure, threshold, met)


def evaluate(results: list[dict], streams: list[dict], *, missing: dict[str, str] | None = None,
             streams_skipped: str | None = None) -> list[Goal]:
    """Every target, judged on one run's summaries.

    ``missing``: peer name -> why it has no rows (``not installed``, ``skipped (--no-peer)``, ...);
    ``streams_skipped``: why the memory scenario did not run, if it did not.
    """
    missing = missing or {}
    return [
        _cpu_goal(_Rows(results), C64, CPU_C64_US, CPU_C64_WAS, missing),
        _cpu_goal(_Rows(results), S32, CPU_S32_US, CPU_S32_WAS, missing),
        _p50_goal(_Rows(results)),
        _ratio_goal(_Rows(results), C64, W2_VS_VLLM_C64, missing),
        _ratio_goal(_Rows(results), S32, W2_VS_VLLM_S32, missing),
        _memory_goal(streams, streams_skipped, missing),
    ]


def targets_block(goals: list[Goal]) -> str:
    """The printed block."""
    met = sum(1 for g in goals if g.met)
    unmeasured = sum(1 for g in goals if g.met is None)
    counts = f"{met} of {len(goals)} met" + (f", {unmeasured} not measured" if unmeasured else "")
    scaled = [g for g in goals if g.scaled]
    if scaled:
        counts += f"; scaled by vllm-router, {sum(1 for g in scaled if g.scaled_met)} of {len(scaled)} absolute ones met"
    lines = [f"targets ({counts}; a report, not a pass/fail):"]
    lines += [f"- {g.line()}" for g in goals]
    return "\n".join(lines)


__all__ = ["ADDED_P50_MS", "CPU_C64_US", "CPU_S32_US", "Goal", "RSS_PER_STREAM_KB", "STREAMS_TARGET",
           "VLLM_WHEN_SET", "W2_VS_VLLM_C64", "W2_VS_VLLM_S32", "evaluate", "targets_block"]
