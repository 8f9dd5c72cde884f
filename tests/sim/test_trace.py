"""JSONL traces: what loads, and errors that name the line."""

from __future__ import annotations

import json

import pytest

from fdrouter.sim import TraceError, load_trace, simulate


def _write(tmp_path, lines: list[str]) -> str:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


GOOD = [
    json.dumps({"arrival": 0.5, "prompt": "hello " * 100, "output_tokens": 8, "session": "s1"}),
    "",
    json.dumps({"arrival": 0.1, "prompt_tokens": 300, "output_tokens": 4}),
    json.dumps({"arrival": 0.5, "prompt_tokens": 300, "output_tokens": 2, "extra": "ignored"}),
]


def test_a_good_trace_loads_in_arrival_order(tmp_path):
    trace = load_trace(_write(tmp_path, GOOD))
    requests = list(trace)
    assert len(trace) == 3
    assert [r.arrival for r in requests] == [0.1, 0.5, 0.5]
    assert [r.output_tokens for r in requests] == [4, 8, 2]  # ties keep file order
    assert requests[1].session == "s1" and requests[1].prompt == "hello " * 100
    assert requests[0].prompt_tokens == 300 and requests[2].prompt_tokens == 300
    assert requests[0].prompt[:64] != requests[2].prompt[:64]  # count-only prompts share nothing


def test_a_trace_runs_through_the_simulator(tmp_path):
    path = _write(tmp_path, GOOD)
    result = simulate("round_robin", f"trace:{path}", instances=2)
    assert result.summary["requests"] == 3 and result.summary["workload"] == f"trace:{path}"
    assert simulate("round_robin", f"trace:{path}", instances=2, requests=2).summary["requests"] == 2


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "x", "output_tokens": 1}', "'arrival'"),
        ('{"arrival": -1, "prompt": "x", "output_tokens": 1}', "'arrival'"),
        ('{"arrival": "soon", "prompt": "x", "output_tokens": 1}', "'arrival'"),
        ('{"arrival": 1, "output_tokens": 1}', "exactly one of 'prompt'"),
        ('{"arrival": 1, "prompt": "x", "prompt_tokens": 3, "output_tokens": 1}', "exactly one of 'prompt'"),
        ('{"arrival": 1, "prompt": 5, "output_tokens": 1}', "'prompt' must be a string"),
        ('{"arrival": 1, "prompt_tokens": 0, "output_tokens": 1}', "'prompt_tokens'"),
        ('{"arrival": 1, "prompt": "x"}', "'output_tokens'"),
        ('{"arrival": 1, "prompt": "x", "output_tokens": 1.5}', "'output_tokens'"),
        ('{"arrival": 1, "prompt": "x", "output_tokens": 1, "session": 3}', "'session'"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_line(tmp_path, line, problem):
    path = _write(tmp_path, [GOOD[0], GOOD[2], line])
    with pytest.raises(TraceError, match=problem) as info:
        load_trace(path)
    assert f"{path}:3:" in str(info.value)


def test_missing_empty_and_binary_files_are_trace_errors(tmp_path):
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "absent.jsonl")
    with pytest.raises(TraceError, match="no requests"):
        load_trace(_write(tmp_path, [""]))
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceError, match="UTF-8"):
        load_trace(binary)
