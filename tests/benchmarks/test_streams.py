"""The memory scenario counts whole streams, how many were open at once, and RSS per stream."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections import Counter

import pytest
from fdbench.streams import StreamsResult, batches, raise_nofile, run_streams

from fdrouter.testing import MockBackend, MockBehavior


def test_batches_cover_every_stream_and_none_is_larger_than_the_batch():
    assert batches(8000, 100) == [100] * 80
    assert batches(250, 100) == [100, 100, 50]
    assert batches(0, 100) == []
    assert batches(3, 0) == [1, 1, 1]  # a nonsense batch size still opens every stream


def test_rss_per_stream_is_peak_minus_idle_over_the_streams_asked_for():
    r = StreamsResult("fdrouter", 8000, completed=8000, peak_open=8000, idle_rss_kb=48_000, peak_rss_kb=208_000)
    assert r.rss_per_stream_kb == pytest.approx(20.0)
    assert StreamsResult("fdrouter", 8000, idle_rss_kb=48_000).rss_per_stream_kb is None
    assert "8000/8000 completed (failed: none)" in r.line() and "= 20.0 KB/stream" in r.line()
    r.failures = Counter({"timeout": 2, "cut": 1})
    assert "(failed: cut 1, timeout 2)" in r.line()
    assert r.summary()["rss_per_stream_kb"] == 20.0 and r.summary()["failures"] == {"cut": 1, "timeout": 2}
    assert "open at once)" not in r.line()
    r.peak_open = 4000  # a slow ramp: half of them ended before the rest were open
    assert "= 20.0 KB/stream (40.0 KB per stream open at once)" in r.line()


def test_raise_nofile_lifts_the_soft_limit_to_the_hard_one_for_this_process_and_its_children():
    code = ("import resource, sys; from fdbench.streams import raise_nofile; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "soft, hard = raise_nofile(); import subprocess; "
            "child = subprocess.run([sys.executable, '-c', 'import resource; "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])'], capture_output=True, text=True).stdout; "
            "print(soft, hard, child.strip())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30, check=True)
    soft, hard, child = map(int, out.stdout.split())
    assert child == soft > 256
    assert soft == hard or hard == resource.RLIM_INFINITY  # the kernel caps an infinite hard limit lower
    assert raise_nofile()[0] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def test_every_stream_that_ends_in_done_counts_and_all_were_open_at_once():
    async with MockBackend(behavior=MockBehavior(output_tokens=3, token_delay=0.5)) as mock:
        result = await run_streams(mock.url + "/v1/chat/completions", os.getpid(), "mock", 30, batch=7,
                                   prompt_chars=50, say=lambda _: None)
    assert result.completed == 30 and not result.failures
    # 3 tokens 0.5 s apart: every stream still runs when the last batch is in
    assert result.peak_open == 30
    assert result.idle_rss_kb is not None and result.peak_rss_kb >= result.idle_rss_kb


async def test_streams_the_backend_cuts_or_refuses_are_failures_not_completions():
    async with MockBackend(behavior=MockBehavior(output_tokens=4, reset_after_chunks=2)) as mock:
        cut = await run_streams(mock.url + "/v1/chat/completions", os.getpid(), "mock", 5, batch=2,
                                prompt_chars=50, say=lambda _: None)
    assert cut.completed == 0 and sum(cut.failures.values()) == 5
    async with MockBackend(behavior=MockBehavior(fail_status=503)) as mock:
        refused = await run_streams(mock.url + "/v1/chat/completions", os.getpid(), "mock", 4, batch=2,
                                    prompt_chars=50, say=lambda _: None)
    assert refused.completed == 0 and refused.failures == Counter({"HTTP 503": 4})
