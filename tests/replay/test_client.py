"""The open-loop client against a real router and mock backends: reuse seen live, errors, bounds, stopping."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fdrouter.replay import replay
from fdrouter.sim import load_trace, simulate
from fdrouter.testing.polling import wait_until

# Prompts of whole 512-token blocks: the mock (16-token blocks over text) and the simulator
# (the trace's 512-token blocks) then count exactly the same cached tokens.
ROWS = [
    (0, 1024, [1, 2]), (40, 1536, [1, 2, 3]), (80, 1024, [4, 5]), (120, 2048, [1, 2, 3, 6]),
    (160, 512, [4]), (200, 1536, [1, 7, 8]), (240, 1024, [4, 5]),
]


def _trace(tmp_path: Path, rows=ROWS, output: int = 3) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"timestamp": ts, "input_length": n, "output_length": output, "hash_ids": ids})
                            + "\n" for ts, n, ids in rows))
    return path


async def test_a_replay_finds_the_traces_prefix_reuse_live_as_the_simulator_does(tmp_path, cluster):
    path = _trace(tmp_path)
    c = await cluster(mixed=1, behavior={"engine": "toy", "output_tokens": 10_000})
    run = await replay(load_trace(path), c.url, timeout=30)
    assert run.summary["errors"] == 0 and run.summary["completed"] == len(ROWS) and not run.stopped
    simulated = simulate("round_robin", f"trace:{path}", instances=1).requests
    assert [o.cached_tokens for o in run.outcomes] == list(simulated["cached_tokens"])
    assert [o.prompt_tokens for o in run.outcomes] == [n for _, n, _ in ROWS]  # 4 characters a token
    assert [o.completion_tokens for o in run.outcomes] == [3] * len(ROWS)
    backend = c.backends[0]
    assert run.summary["cache_hit_rate"] == backend.cached_tokens_total / backend.prompt_tokens_total > 0
    assert [h["X-Request-Id"] for h in backend.received_headers] == [f"replay-{i}" for i in range(len(ROWS))]


async def test_requests_are_sent_no_earlier_than_their_scaled_arrival(tmp_path, cluster):
    path = _trace(tmp_path, rows=[(1000, 512, [1]), (2000, 512, [2]), (3000, 512, [3])], output=1)
    c = await cluster(mixed=1)
    run = await replay(load_trace(path), c.url, speedup=10, timeout=30)
    assert [o.scheduled for o in run.outcomes] == pytest.approx([0.0, 0.1, 0.2])  # from the first one
    assert run.wall_s >= 0.2 and run.summary["errors"] == 0


async def test_an_answer_that_never_comes_is_a_timeout_and_the_replay_still_ends(tmp_path, cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True})
    run = await replay(load_trace(_trace(tmp_path, rows=ROWS[:2])), c.url, timeout=0.5)
    assert [o.error for o in run.outcomes] == ["timeout", "timeout"]
    assert run.summary["error_kinds"] == {"timeout": 2}


async def test_an_error_status_is_counted_by_kind(tmp_path, cluster):
    c = await cluster(mixed=1, behavior={"fail_status": 400})
    run = await replay(load_trace(_trace(tmp_path, rows=ROWS[:3])), c.url, timeout=10)
    assert run.summary["error_kinds"] == {"http_400": 3} and run.summary["completed"] == 0


async def test_setting_stop_cancels_open_requests_and_sends_no_more(tmp_path, cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True})
    rows = [(0, 512, [1]), (60_000, 512, [2])]  # the second is due in a minute
    stop = asyncio.Event()
    task = asyncio.ensure_future(replay(load_trace(_trace(tmp_path, rows=rows)), c.url, timeout=60, stop=stop))
    await wait_until(lambda: c.backends[0].requests_in_flight == 1, timeout=10)
    stop.set()
    run = await asyncio.wait_for(task, timeout=10)
    assert run.stopped and [o.error for o in run.outcomes] == ["cancelled"]
    await wait_until(lambda: c.backends[0].requests_in_flight == 0, timeout=10)  # the router let go too
