"""The ``simulate`` subcommand: JSON and table output, and exit code 2 on bad input."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from fdrouter.sim.cli import add_simulate_parser, run_simulate


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fdrouter")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    return run_simulate(parser.parse_args(["simulate", *argv]))


def test_json_output_parses_and_has_the_summary_keys(capsys):
    assert _run("--policy", "round_robin", "--requests", "200", "--instances", "3", "--seed", "7", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("policy", "requests", "ttft_p50", "ttft_p99", "e2e_p50", "throughput_rps", "cache_hit_rate",
                "load_imbalance"):
        assert key in summary
    assert summary["policy"] == "round_robin" and summary["requests"] == 200 and summary["instances"] == 3


def test_splitwise_with_policy_options_prints_a_table(capsys):
    code = _run("--splitwise", "--prefill", "1", "--decode", "2", "--prefill-policy", "random",
                "--decode-policy", "round_robin", "--policy-option", "seed=3", "--requests", "100")
    assert code == 0
    out = capsys.readouterr().out
    assert "random/round_robin" in out and "splitwise" in out and "TTFT p99" in out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--workload", "nope"], "unknown workload 'nope'"),
        (["--workload", "trace:/nonexistent/trace.jsonl"], "cannot read trace"),
        (["--rate", "0"], "--rate must be > 0"),
        (["--rate", "-3"], "--rate must be > 0"),
        (["--policy-option", "bogus=1"], "bogus"),
        (["--instances", "0"], "instances must be >= 1"),
    ],
)
def test_bad_input_exits_2_with_the_problem_on_stderr(capsys, argv, problem):
    assert _run(*argv, "--requests", "10") == 2
    captured = capsys.readouterr()
    assert problem in captured.err and captured.out == ""


def test_a_bad_trace_line_is_reported_with_its_number(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival": 0, "prompt_tokens": 5, "output_tokens": 1}\n{"arrival": 1}\n')
    assert _run("--workload", f"trace:{path}") == 2
    assert f"{path}:2:" in capsys.readouterr().err


def test_importing_the_cli_and_the_package_does_not_import_pandas():
    code = "import sys, fdrouter, fdrouter.sim, fdrouter.sim.cli; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def _simulate_json_in_a_new_process(hash_seed: str) -> dict:
    argv = ["-m", "fdrouter", "simulate", "--policy", "cache_aware", "--workload", "multi-turn",
            "--requests", "300", "--instances", "3", "--seed", "11", "--json"]
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}  # str hashes differ between the two runs
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True, timeout=120, env=env)
    return json.loads(out.stdout)


def test_json_output_is_identical_for_one_seed_except_for_its_meta_key():
    first, second = _simulate_json_in_a_new_process("1"), _simulate_json_in_a_new_process("2")
    for run in (first, second):
        assert set(run.pop("meta")) == {"wall_s", "fdrouter_version"}
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert "wall_s" not in first and "duration_s" not in first


def test_the_table_still_shows_the_wall_time(capsys):
    assert _run("--requests", "50", "--instances", "2") == 0
    assert "wall time" in capsys.readouterr().out
