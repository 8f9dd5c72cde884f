"""``fdrouter replay``: bad input, a whole run through a router, and Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from fdrouter.cli import main
from fdrouter.testing.polling import wait_until

from .test_client import ROWS, _trace


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--speedup", "0"], "--speedup must be > 0"),
        (["--timeout", "-1"], "--timeout must be > 0"),
        (["--requests", "0"], "--requests must be >= 1"),
        (["--max-in-flight", "0"], "--max-in-flight must be >= 1"),
        (["--url", "localhost:9000"], "--url must be an http://"),
    ],
)
def test_bad_flags_exit_2_with_the_problem_on_stderr(tmp_path, capsys, extra, problem):
    argv = ["replay", str(_trace(tmp_path)), "--url", "http://127.0.0.1:9", *extra]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert problem in captured.err and captured.out == ""


def test_a_bad_trace_exits_2_naming_the_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 512, "output_length": 1, "hash_ids": [1]}\n{"timestamp": -5}\n')
    assert main(["replay", str(path), "--url", "http://127.0.0.1:9"]) == 2
    assert f"{path}:2:" in capsys.readouterr().err


async def _cli(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fdrouter", "replay", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_a_run_prints_the_summary_as_json_and_exits_0(tmp_path, cluster):
    c = await cluster(mixed=2, behavior={"engine": "toy", "output_tokens": 10_000}, policy="cache_aware")
    proc = await _cli(str(_trace(tmp_path)), "--url", c.url, "--speedup", "4", "--requests", "5", "--json")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["requests"], summary["completed"], summary["errors"]) == (5, 5, 0)
    assert summary["cache_hit_rate"] > 0 and summary["speedup"] == 4 and not summary["stopped"]
    assert "replay" in err.decode()  # the progress bar, on stderr


async def test_ctrl_c_stops_at_once_and_prints_what_was_measured(tmp_path, cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True})
    path = _trace(tmp_path, rows=[*ROWS[:1], (600_000, 512, [9])])
    proc = await _cli(str(path), "--url", c.url, "--no-progress")
    try:
        await wait_until(lambda: c.backends[0].requests_in_flight == 1, timeout=30)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130
    text = out.decode()
    assert "stopped early" in text and "cancelled 1" in text
