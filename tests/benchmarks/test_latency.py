"""Latency numbers: wrk's coordinated-omission correction undone, and samples pooled across rounds.

The recorded run (data/wrk_histogram.txt, see record_fixtures.py) hit a server that answers
every 20th request 20 ms late and the others at once, with 4 connections: 5% slow answers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fdbench.latency import histogram_samples, percentile, undo_wrk_correction
from fdbench.results import Result
from fdbench.wrk_output import DONE_MARK, parse_wrk_output
from hypothesis import given
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parent / "data"
RECORDING = json.loads((DATA / "recording.json").read_text())
SLOW_US = round(RECORDING["slow_seconds"] * 1e6)


def report(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def done_fields(text: str) -> dict[str, str]:
    line = next(line for line in text.splitlines() if line.startswith(DONE_MARK))
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def wrk_stats_correct(raw: dict[int, int], expected: int) -> dict[int, int]:
    """wrk 4.1.0's ``stats_correct`` (src/stats.c), transcribed: what the Lua script then reads."""
    data = dict(raw)
    for n in range(expected * 2, max(raw) + 1):
        count = data.get(n, 0)
        m = n - expected
        while count > 0 and m > expected:
            data[m] = data.get(m, 0) + count
            m -= expected
    # done() dumps the buckets from stats->min, which the correction does not lower
    return {us: n for us, n in data.items() if us >= min(raw) and n}


@pytest.mark.parametrize("name", ["wrk_histogram", "wrk_errors"])
def test_undoing_a_recorded_histogram_leaves_one_sample_per_response_and_wrk_s_correction_redoes_it(name):
    fields = done_fields(report(name))
    corrected = {int(us): int(n) for us, n in (p.split(":") for p in fields["hist"].split(","))}
    duration_us, responses = int(fields["duration_us"]), int(fields["requests"])
    raw = undo_wrk_correction(corrected, duration_us, responses, 4)
    assert sum(raw.values()) == responses  # no timeouts in these runs: one sample per response
    assert sum(corrected.values()) > responses  # wrk had added samples
    # correcting the result again, as wrk does, gives exactly what the real wrk dumped
    assert wrk_stats_correct(raw, duration_us // (responses // 4)) == corrected


def test_the_slow_answers_are_counted_once_each_after_undoing():
    run = parse_wrk_output(report("wrk_histogram"), connections=4)
    slow = sum(n for us, n in run.histogram.items() if us >= SLOW_US)
    server = RECORDING["server_after_histogram_run"]
    # the server delayed slow_delayed answers; up to 4 (one per connection) were cut at the end
    assert server["slow_delayed"] - 4 <= slow <= server["slow_delayed"]


def test_undone_percentiles_show_the_closed_loop_latency_that_wrk_s_printed_ones_hide():
    run = parse_wrk_output(report("wrk_histogram"), connections=4)
    samples = histogram_samples(run.histogram)
    # 5% of answers are 20 ms late: p90 is a fast answer, p99 a slow one
    assert percentile(samples, 90) < 1e-3
    assert percentile(samples, 99) >= RECORDING["slow_seconds"]
    assert run.percentiles[90] > 10e-3  # wrk printed "90%   16.95ms": its phantom samples


@given(
    raw=st.dictionaries(st.integers(1, 3000), st.integers(1, 40), min_size=1, max_size=60),
    connections=st.integers(1, 64),
    expected=st.integers(1, 400),
    spare=st.integers(0, 10**6),
)
def test_undoing_wrk_s_correction_gives_back_exactly_the_samples_it_started_from(raw, connections, expected,
                                                                                 spare):
    responses = sum(raw.values())
    per_connection = responses // connections
    if per_connection == 0:
        assert undo_wrk_correction(raw, 10**6, responses, connections) == raw  # wrk corrects nothing then
        return
    duration_us = expected * per_connection + spare % per_connection  # wrk: expected = duration / per_connection
    corrected = wrk_stats_correct(raw, expected)
    assert undo_wrk_correction(corrected, duration_us, responses, connections) == raw


def test_rounds_pool_their_samples_so_p99_is_the_p99_of_all_answers_not_a_mean_of_rounds():
    slow_round = parse_wrk_output(report("wrk_histogram"), connections=4)
    fast_round = parse_wrk_output(report("wrk_errors"), connections=4)
    result = Result("fdrouter", "non-stream c4", 4, False, generator="wrk")
    result.add_wrk_round(slow_round)
    result.add_wrk_round(fast_round)
    assert result.requests == 7676 + (23219 - 4644)
    assert result.errors == 4644 + 3869
    assert result.seconds == pytest.approx(2.099974 + 1.099512)
    assert result.bytes_read == 652080 + 2006126
    everything = histogram_samples(Counter(slow_round.histogram) + Counter(fast_round.histogram))
    assert sorted(result.latencies) == everything
    for pct in (50, 90, 99):
        assert result.latency(pct) == percentile(everything, pct)
    # 380 slow answers in 30895 are 1.2%: p99 is slow, which a mean of the two rounds' p99s is not
    assert result.latency(99) >= RECORDING["slow_seconds"]
    assert (percentile(histogram_samples(slow_round.histogram), 99)
            + percentile(histogram_samples(fast_round.histogram), 99)) / 2 < RECORDING["slow_seconds"]


def test_rounds_without_histograms_fall_back_to_request_weighted_printed_percentiles():
    plain = parse_wrk_output(report("wrk_plain"), connections=8)
    slow = parse_wrk_output(
        "\n".join(line for line in report("wrk_histogram").splitlines() if not line.startswith(DONE_MARK)), 4)
    result = Result("direct", "non-stream c8", 8, False, generator="wrk")
    result.add_wrk_round(plain)
    result.add_wrk_round(slow)
    assert result.latencies == []
    assert result.latency(50) == pytest.approx((87971 * 81e-6 + 7676 * 166e-6) / (87971 + 7676))
    assert result.latency(99) == pytest.approx((87971 * 247e-6 + 7676 * 20.78e-3) / (87971 + 7676))


def test_percentile_of_no_samples_is_none_and_of_one_sample_is_that_sample():
    assert percentile([], 50) is None
    assert percentile([0.25], 99) == 0.25
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
