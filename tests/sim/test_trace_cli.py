"""``fdrouter simulate`` on production traces: engine, cache size, block size and time scale from the command line."""

from __future__ import annotations

import argparse
import json

import pytest

from fdrouter.sim.cli import add_simulate_parser, run_simulate
from fdrouter.sim.data import MOONCAKE_SYNTHETIC_TRACE
from fdrouter.sim.synth_trace import conversation_like, write_trace


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fdrouter")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    return run_simulate(parser.parse_args(["simulate", *argv]))


def test_the_papers_study_is_one_command(capsys):
    code = _run("--workload", f"trace:{MOONCAKE_SYNTHETIC_TRACE}", "--engine", "llama3-70b-8xa800",
                "--instances", "10", "--cache-tokens", "3000000", "--policy", "cache_aware", "--json")
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"] == 3993  # a trace runs whole unless --requests says otherwise
    assert summary["engine"] == "llama3-70b-8xa800" and summary["cache_tokens"] == 3_000_000 // 512 * 512
    assert summary["instances"] == 10 and 0 < summary["cache_hit_rate"] < 0.66


def test_time_scale_compresses_the_traces_arrivals(capsys):
    runs = []
    for scale in ("1", "0.5"):
        assert _run("--workload", f"trace:{MOONCAKE_SYNTHETIC_TRACE}", "--requests", "200", "--time-scale", scale,
                    "--json") == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[1]["throughput_rps"] > 1.5 * runs[0]["throughput_rps"]


def test_the_table_names_the_engine_and_the_cache(capsys):
    assert _run("--workload", "uniform", "--requests", "50", "--engine", "llama3-8b-a100") == 0
    out = capsys.readouterr().out
    assert "llama3-8b-a100" in out and "cache/instance" in out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--engine", "h100"], "unknown engine 'h100'"),
        (["--cache-tokens", "-1"], "--cache-tokens must be >= 0"),
        (["--block-tokens", "0"], "--block-tokens must be >= 1"),
        (["--time-scale", "0"], "--time-scale must be > 0"),
        (["--time-scale", "2"], "time_scale applies to trace"),  # a named workload has a rate
    ],
)
def test_bad_trace_flags_exit_2_with_the_problem_on_stderr(capsys, argv, problem):
    assert _run(*argv, "--requests", "10") == 2
    captured = capsys.readouterr()
    assert problem in captured.err and captured.out == ""


def test_the_conversation_like_trace_has_the_release_statistics_and_depends_only_on_its_seed(tmp_path):
    records = list(conversation_like(seed=3))
    assert records == list(conversation_like(seed=3)) and records != list(conversation_like(seed=4))
    assert len(records) == 12_031
    tokens = sum(r["input_length"] for r in records)
    assert 11_000 < tokens / len(records) < 13_000
    assert 300 < sum(r["output_length"] for r in records) / len(records) < 390
    assert 22 < sum(len(r["hash_ids"]) for r in records) / len(records) < 26
    seen: set[int] = set()
    cached = 0
    for r in records:  # the reuse ratio, counted as the anchor test counts it
        hit = 0
        while hit < len(r["hash_ids"]) and r["hash_ids"][hit] in seen:
            hit += 1
        seen.update(r["hash_ids"])
        cached += min(hit * 512, r["input_length"])
    assert 0.35 < cached / tokens < 0.45
    path = tmp_path / "conv.jsonl"
    assert write_trace(records[:100], path) == 100
    assert _run("--workload", f"trace:{path}", "--instances", "2") == 0
