"""The targets block judges each target of the issue from one run's results dict, and names a missing peer."""

from __future__ import annotations

from fdbench.goals import evaluate, targets_block
from fdbench.results import Result
from fdbench.targets import DIRECT, FDROUTER, FDROUTER_W2, SGLANG, VLLM
from fdbench.workload import C1, C64, S32


def row(target: str, scenario: str, *, rps: float, p50_ms: float, cpu_us: float | None) -> dict:
    """One summary as ``Result.summary()`` writes it to --json: 1000 requests at ``rps``."""
    r = Result(target, scenario, 1, scenario == S32, generator="wrk", requests=1000, seconds=1000 / rps,
               latencies=[p50_ms / 1000] * 1000)
    r.proxy_cpu = None if cpu_us is None else cpu_us * 1000 / 1e6
    return r.summary()


RESULTS = [
    row(DIRECT, C1, rps=6000, p50_ms=0.150, cpu_us=None),
    row(FDROUTER, C1, rps=3000, p50_ms=0.260, cpu_us=200),  # +0.110 ms: met
    row(FDROUTER_W2, C1, rps=2900, p50_ms=0.290, cpu_us=230),
    row(VLLM, C1, rps=3100, p50_ms=0.250, cpu_us=170),
    row(FDROUTER, C64, rps=5000, p50_ms=11.0, cpu_us=95),  # above 90: NOT met
    row(FDROUTER_W2, C64, rps=5500, p50_ms=10.0, cpu_us=105),
    row(VLLM, C64, rps=10000, p50_ms=6.0, cpu_us=90),  # 5500 / 10000 = 0.55x: NOT met
    row(FDROUTER, S32, rps=3800, p50_ms=7.0, cpu_us=108),  # met
    row(FDROUTER_W2, S32, rps=3600, p50_ms=8.0, cpu_us=120),
    row(VLLM, S32, rps=2400, p50_ms=11.0, cpu_us=300),  # 1.5x: met
]
STREAMS = [
    {"target": "fdrouter --workers 1", "streams": 8000, "completed": 8000, "peak_open": 8000,
     "rss_per_stream_kb": 20.1, "note": ""},
    {"target": VLLM, "streams": 8000, "completed": 8000, "peak_open": 7000, "rss_per_stream_kb": 74.0, "note": ""},
]


def verdicts(goals: list) -> list[str]:
    return [g.verdict for g in goals]


def test_each_target_is_judged_against_its_threshold_with_ratios_from_the_same_run():
    goals = evaluate(RESULTS, STREAMS, missing={SGLANG: "not installed"})
    assert verdicts(goals) == ["NOT met", "met", "met", "NOT met", "met", "met"]
    cpu_c64, cpu_s32, p50, ratio_c64, ratio_s32, memory = goals
    assert cpu_c64.figure.startswith("fdrouter 95 us/req (×2 workers 105; sglang-router not installed; vllm-router 90")
    assert "<= 90 us (was 134)" in cpu_c64.threshold
    assert p50.figure.startswith("fdrouter +0.110 ms")
    assert ratio_c64.figure.startswith("0.55x (5500 / 10000 req/s; 1 worker 0.50x")
    assert ratio_s32.figure.startswith("1.50x")
    assert "8000/8000 completed" in memory.figure and "20.1 KB/stream" in memory.figure
    assert "vllm-router: 8000/8000 completed, 7000 open at once, 74.0 KB/stream" in memory.figure


def test_a_missing_peer_is_named_on_its_line_instead_of_a_ratio():
    without_vllm = [r for r in RESULTS if r["target"] != VLLM]
    goals = evaluate(without_vllm, STREAMS[:1], missing={VLLM: "not installed", SGLANG: "skipped (--no-peer)"})
    ratio_c64, ratio_s32 = goals[3], goals[4]
    for goal in (ratio_c64, ratio_s32):
        assert goal.verdict == "not measured"
        assert goal.figure.startswith("vllm-router not installed: no ratio")
    assert "vllm-router not installed" in goals[0].figure and "sglang-router skipped (--no-peer)" in goals[0].figure
    assert "(vllm-router not installed)" in goals[5].figure and goals[5].verdict == "met"
    block = targets_block(goals)
    assert block.splitlines()[0] == "targets (3 of 6 met, 2 not measured; a report, not a pass/fail):"
    assert "vllm-router not installed: no ratio" in block


def test_the_memory_target_needs_every_stream_complete_and_the_full_count():
    one_lost = [{**STREAMS[0], "completed": 7999}]
    assert evaluate(RESULTS, one_lost)[5].verdict == "NOT met"
    too_big = [{**STREAMS[0], "rss_per_stream_kb": 25.6}]
    assert evaluate(RESULTS, too_big)[5].verdict == "NOT met"
    small = [{**STREAMS[0], "streams": 300, "completed": 300}]
    goal = evaluate(RESULTS, small)[5]
    assert goal.verdict == "NOT met" and "only 300 streams asked for" in goal.figure
    skipped = evaluate(RESULTS, [], streams_skipped="skipped (--streams 0)")[5]
    assert skipped.verdict == "not measured" and skipped.figure == "skipped (--streams 0)"


def test_a_target_without_its_row_is_not_measured_rather_than_missed():
    goals = evaluate([r for r in RESULTS if r["target"] != FDROUTER], STREAMS)
    assert verdicts(goals)[:3] == ["not measured"] * 3
    assert goals[0].figure.startswith("fdrouter - us/req")


def test_absolute_targets_are_also_judged_scaled_by_how_far_vllm_router_moved_since_they_were_set():
    cpu_c64, cpu_s32, p50 = evaluate(RESULTS, STREAMS)[:3]
    # c64: vllm-router 90 us here against 48 when the 90 us target was set: x1.88 -> 169 us; fdrouter 95 meets it
    assert cpu_c64.verdict == "NOT met" and cpu_c64.scaled_met is True
    assert "48 us when set, 90 us in this run: x1.88): <= 169 us: met" in cpu_c64.scaled
    # streams: 300 against 135 -> x2.22 -> 244 us
    assert cpu_s32.scaled_met is True and "<= 244 us" in cpu_s32.scaled
    # p50: vllm-router adds 0.100 ms here against 0.053 -> x1.89 -> 0.226 ms; fdrouter adds 0.110
    assert p50.scaled_met is True and "<= 0.226 ms" in p50.scaled
    slower = [r if r["target"] != FDROUTER or r["scenario"] != C64 else row(FDROUTER, C64, rps=5000, p50_ms=11.0,
                                                                             cpu_us=200) for r in RESULTS]
    assert evaluate(slower, STREAMS)[0].scaled_met is False
    block = targets_block(evaluate(RESULTS, STREAMS))
    assert "scaled by vllm-router, 3 of 3 absolute ones met" in block.splitlines()[0]


def test_without_vllm_router_no_scaled_judgement_is_made():
    goals = evaluate([r for r in RESULTS if r["target"] != VLLM], STREAMS, missing={VLLM: "not installed"})
    assert all(g.scaled == "" and g.scaled_met is None for g in goals)
    assert "scaled" not in targets_block(goals)
