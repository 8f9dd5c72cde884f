"""Reading a streamed answer and summarising a replay, without a network."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fdrouter.replay import Outcome, summarize
from fdrouter.replay.outcome import StreamState, percentile


def _data(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n"


USAGE = {"prompt_tokens": 1000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 512}}


def test_a_completions_stream_gives_the_first_token_time_and_the_usage():
    state = StreamState()
    state.feed(b": comment\n", 0.5)
    state.feed(_data({"choices": [{"text": ""}]}), 1.0)  # an empty first chunk is not a token
    state.feed(_data({"choices": [{"text": "tok0"}]}), 2.0)
    state.feed(_data({"choices": [{"text": "tok1"}]}), 3.0)
    state.feed(_data({"choices": [], "usage": USAGE}), 4.0)
    state.feed(b"data: [DONE]\n", 4.0)
    outcome = Outcome(7, 0.0)
    state.apply(outcome, sent=0.5, ended=4.5)
    assert (outcome.ttft, outcome.e2e) == (1.5, 4.0)
    assert (outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens) == (1000, 512, 3)
    assert outcome.error is None and state.done


def test_a_chat_stream_counts_delta_content_as_tokens():
    state = StreamState()
    state.feed(_data({"choices": [{"delta": {"role": "assistant"}}]}), 1.0)
    state.feed(_data({"choices": [{"delta": {"content": "hi"}}]}), 2.0)
    assert state.first_token_at == 2.0


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([_data({"error": {"message": "upstream died", "type": "server_error", "code": 502}})], "stream_error"),
        ([b"data: {not json\n"], "stream_error"),
        ([_data({"choices": [], "usage": USAGE}), b"data: [DONE]\n"], "no_answer"),
    ],
)
def test_a_broken_or_empty_stream_is_an_error_outcome(lines, error):
    state = StreamState()
    for line in lines:
        state.feed(line, 1.0)
    outcome = Outcome(0, 0.0)
    state.apply(outcome, 0.0, 2.0)
    assert outcome.error == error


def test_percentiles_interpolate_as_numpy_does():
    values = [5.0, 1.0, 3.0, 10.0, 2.5]
    for q in (0, 25, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert math.isnan(percentile([], 50))


def test_the_summary_counts_errors_and_takes_the_hit_rate_from_successful_answers():
    good = [Outcome(i, 0.0, late=0.01 * i, ttft=0.1 * (i + 1), e2e=1.0 + i, prompt_tokens=1000, cached_tokens=250 * i,
                    completion_tokens=11) for i in range(3)]
    bad = [Outcome(3, 0.0, error="timeout"), Outcome(4, 0.0, error="http_503", prompt_tokens=1000, cached_tokens=1000)]
    summary = summarize(good + bad, wall_s=10.0)
    assert (summary["requests"], summary["completed"], summary["errors"]) == (5, 3, 2)
    assert summary["error_kinds"] == {"http_503": 1, "timeout": 1}
    assert summary["cache_hit_rate"] == pytest.approx(750 / 3000)
    assert summary["ttft_p50"] == pytest.approx(0.2) and summary["e2e_p99"] == pytest.approx(2.98)
    assert summary["tpot_p50"] == pytest.approx((2.0 - 0.2) / 10)
    assert summary["throughput_rps"] == pytest.approx(0.3)
