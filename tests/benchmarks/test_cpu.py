"""CPU per request from /proc, on /proc text recorded around a real wrk run (see record_fixtures.py).

The server process is named ``srv) (x`` on purpose: /proc/PID/stat puts the name in parentheses,
and a parser that splits on the first ``)`` reads the wrong fields. Recorded with CLK_TCK 100.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fdbench.cpu import cpu_seconds, outside_fractions, parse_machine_stat, parse_pid_stat, per_request_us
from fdbench.results import Result
from fdbench.wrk_output import parse_wrk_output

DATA = Path(__file__).resolve().parent / "data"
RECORDING = json.loads((DATA / "recording.json").read_text())
TICKS = RECORDING["clk_tck"]


def proc(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def test_process_cpu_is_utime_plus_stime_even_with_parentheses_in_the_process_name():
    assert "(srv) (x) " in proc("proc_pid_stat_before")
    # fields 14 and 15 of proc(5): "... 3977 0 0 0 108 99 ..." before, "... 116 108 ..." after
    assert parse_pid_stat(proc("proc_pid_stat_before"), TICKS) == pytest.approx((108 + 99) / 100)
    assert parse_pid_stat(proc("proc_pid_stat_after"), TICKS) == pytest.approx((116 + 108) / 100)


def test_process_cpu_from_proc_agrees_with_the_process_s_own_clock():
    spent = parse_pid_stat(proc("proc_pid_stat_after"), TICKS) - parse_pid_stat(proc("proc_pid_stat_before"), TICKS)
    own = (RECORDING["server_after_histogram_run"]["process_time"]
           - RECORDING["server_before_histogram_run"]["process_time"])
    assert spent == pytest.approx(own, abs=2 / TICKS)  # /proc counts whole ticks, at each end


def test_cpu_per_request_is_the_cpu_spent_over_the_run_divided_by_its_answered_requests():
    run = parse_wrk_output((DATA / "wrk_histogram.txt").read_text(), connections=4)
    before = parse_pid_stat(proc("proc_pid_stat_before"), TICKS)
    after = parse_pid_stat(proc("proc_pid_stat_after"), TICKS)
    result = Result("direct", "non-stream c4", 4, False, generator="wrk")
    result.add_wrk_round(run, proxy=(None, None), backend=(before, after))
    assert result.proxy_cpu is None  # no proxy process: no number rather than 0
    assert result.cpu_us(result.backend_cpu) == pytest.approx(0.17 / 7676 * 1e6)  # ~22 us per request
    # a second round adds up; a round whose sample failed (process gone) adds nothing
    result.add_wrk_round(run, backend=(after, after + 0.17))
    result.add_wrk_round(run, backend=(after, None))
    assert result.requests == 3 * 7676
    assert result.backend_cpu == pytest.approx(0.34)
    assert result.cpu_us(result.backend_cpu) == pytest.approx(0.34 / (3 * 7676) * 1e6)


def test_cpu_per_request_without_requests_or_samples_is_none():
    assert per_request_us(None, 100) is None
    assert per_request_us(1.0, 0) is None
    assert per_request_us(0.5, 1000) == pytest.approx(500.0)


def test_machine_cpu_is_busy_time_without_softirq_and_steal_apart():
    # "cpu  424150 0 24761 341646 1192 0 3750 2649 0 0": user nice system idle iowait irq softirq steal
    busy, steal = parse_machine_stat(proc("proc_stat_before"), TICKS)
    assert busy == pytest.approx((424150 + 0 + 24761 + 0) / 100)
    assert steal == pytest.approx(2649 / 100)
    with pytest.raises(ValueError):
        parse_machine_stat("intr 1 2 3\n", TICKS)


def test_outside_load_is_the_machine_s_busy_time_minus_ours_over_all_cores():
    before, after = parse_machine_stat(proc("proc_stat_before")), parse_machine_stat(proc("proc_stat_after"))
    elapsed, cpus = RECORDING["histogram_run_elapsed_seconds"], RECORDING["cpus"]
    ours = (RECORDING["server_after_histogram_run"]["process_time"]
            - RECORDING["server_before_histogram_run"]["process_time"])
    others, steal = outside_fractions((0.0, before, 0.0), (elapsed, after, ours), cpus)
    busy = ((424160 - 424150) + (24779 - 24761)) / 100  # user and system ticks between the two samples
    assert others == pytest.approx((busy - ours) / (elapsed * cpus))
    assert steal == 0.0
    # more of our own CPU than the machine's busy time (softirq, rounding): never negative
    assert outside_fractions((0.0, before, 0.0), (elapsed, after, 10.0), cpus)[0] == 0.0
    assert outside_fractions((0.0, None, 0.0), (elapsed, after, ours), cpus) is None


def test_cpu_seconds_reads_a_live_process_and_is_none_for_one_that_is_gone():
    assert abs(cpu_seconds(os.getpid()) - time.process_time()) < 0.05  # both count this process's ticks
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_seconds(child.pid) is None
    assert cpu_seconds(None) is None
