"""Mooncake-format traces: the shipped trace's own reuse ratio, format detection, errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fdrouter.sim import BlockRequest, Request, TraceError, load_trace, simulate
from fdrouter.sim.data import DATA_DIR, MOONCAKE_SYNTHETIC_TRACE


def _write(tmp_path: Path, rows: list[object], name: str = "trace.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(ts: int, tokens: int, ids: list[int], out: int = 4) -> dict:
    return {"timestamp": ts, "input_length": tokens, "output_length": out, "hash_ids": ids}


def test_one_instance_with_an_unbounded_cache_finds_exactly_the_traces_own_prefix_reuse():
    # Independently of the simulator: per request, the leading blocks already seen in an earlier
    # request, as tokens (a partial last block counts its own tokens only).
    cached = total = 0
    seen: set[int] = set()
    for line in MOONCAKE_SYNTHETIC_TRACE.read_text().splitlines():
        row = json.loads(line)
        hit = 0
        for block in row["hash_ids"]:
            if block not in seen:
                break
            hit += 1
        seen.update(row["hash_ids"])
        cached += min(hit * 512, row["input_length"])
        total += row["input_length"]
    result = simulate("round_robin", f"trace:{MOONCAKE_SYNTHETIC_TRACE}", instances=1, cache_tokens=10**12)
    assert result.summary["requests"] == 3993
    assert int(result.requests["cached_tokens"].sum()) == cached
    assert int(result.requests["prompt_tokens"].sum()) == total
    assert result.summary["cache_hit_rate"] == pytest.approx(cached / total, abs=1e-12)
    assert abs(result.summary["cache_hit_rate"] - 0.66) < 0.02  # the paper's Table 2 gives 66%


def test_the_shipped_trace_says_where_it_comes_from_and_its_license():
    readme = (DATA_DIR / "README.md").read_text()
    assert "kvcache-ai/Mooncake" in readme and "FAST25-release/traces" in readme and "Apache" in readme
    assert sum(1 for _ in MOONCAKE_SYNTHETIC_TRACE.open()) == 3993


def test_a_mooncake_trace_loads_as_block_requests_in_seconds_scaled_by_the_time_scale(tmp_path):
    path = _write(tmp_path, [_row(1500, 600, [7, 8]), _row(500, 512, [7], out=0), _row(1500, 1030, [7, 9, 10])])
    requests = list(load_trace(path, time_scale=0.5))
    assert all(isinstance(r, BlockRequest) for r in requests)
    assert [r.arrival for r in requests] == [0.25, 0.75, 0.75]  # sorted, ties in file order
    assert [r.id for r in requests] == [0, 1, 2]
    assert [r.blocks for r in requests] == [(7,), (7, 8), (7, 9, 10)]
    assert requests[0].output_tokens == 1  # 0 generates one token, as an engine does
    assert [r.prompt_tokens for r in requests] == [512, 600, 1030]


def test_block_prompts_share_text_exactly_where_they_share_leading_ids(tmp_path):
    path = _write(tmp_path, [_row(0, 1100, [1, 2, 3]), _row(0, 1200, [1, 2, 4]), _row(0, 1100, [5, 2, 3])])
    a, b, c = (r.prompt for r in load_trace(path))
    assert (len(a), len(b)) == (1100 * 4, 1200 * 4)  # 4 characters per token
    step = 512 * 4
    assert a[: 2 * step] == b[: 2 * step] and a[2 * step: 2 * step + 8] != b[2 * step: 2 * step + 8]
    assert a[:8] != c[:8]


def test_a_policy_that_reads_blocks_gets_them_and_no_text_while_a_text_policy_gets_the_text(tmp_path):
    from fdrouter.policies import BasePolicy

    path = _write(tmp_path, [_row(0, 1100, [1, 2, 3])])
    seen: dict[str, object] = {}

    class Blocks(BasePolicy):
        name = "blocks_probe"
        needs = frozenset({"prompt_text", "prompt_tokens", "prompt_blocks"})

        def choose(self, candidates, facts):
            seen.update(blocks=facts.prompt_blocks, text=facts.prompt_text, tokens=facts.prompt_tokens)
            return candidates[0]

    class Text(BasePolicy):
        name = "text_probe"
        needs = frozenset({"prompt_text"})

        def choose(self, candidates, facts):
            seen["text_only"] = facts.prompt_text
            return candidates[0]

    simulate(Blocks(), f"trace:{path}", instances=1)
    assert isinstance(seen["blocks"], tuple) and len(seen["blocks"]) == 3
    assert seen["text"] is None and seen["tokens"] == 1100
    simulate(Text(), f"trace:{path}", instances=1)
    assert seen["text_only"] == next(iter(load_trace(path))).prompt


def test_cache_aware_routing_beats_round_robin_on_the_shipped_trace():
    trace = f"trace:{MOONCAKE_SYNTHETIC_TRACE}"
    # the paper's setting: 10 instances of LLaMA3-70B on 8 x A800
    rates = {p: simulate(p, trace, instances=10, requests=1500, engine="llama3-70b-8xa800").summary["cache_hit_rate"]
             for p in ("round_robin", "cache_aware")}
    assert rates["cache_aware"] > rates["round_robin"] + 0.1
    assert rates["cache_aware"] > 3 * rates["round_robin"]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (_row(-1, 512, [1]), "'timestamp'"),
        ({"input_length": 512, "output_length": 1, "hash_ids": [1]}, "'timestamp'"),
        (_row(0, 0, []), "'input_length'"),
        (_row(0, 512, [1], out=-2), "'output_length'"),
        (_row(0, 512, ["a"]), "'hash_ids'"),
        (_row(0, 2000, [1, 2]), "2 hash_ids for 2000 input tokens: with 512-token blocks expected 4"),
        ({"arrival": 1, "prompt_tokens": 5, "output_tokens": 1}, "'timestamp'"),  # formats do not mix
        ("{oops", "not valid JSON"),
    ],
)
def test_a_bad_mooncake_line_is_an_error_naming_the_line(tmp_path, row, problem):
    path = _write(tmp_path, [_row(0, 512, [1]), "", row])
    with pytest.raises(TraceError, match=problem) as info:
        load_trace(path)
    assert f"{path}:3:" in str(info.value)


def test_a_file_in_neither_format_says_what_both_formats_look_like(tmp_path):
    with pytest.raises(TraceError, match="neither fdrouter's trace format.*nor Mooncake's") as info:
        load_trace(_write(tmp_path, [{"ts": 1, "len": 5}]))
    assert ":1:" in str(info.value)


def test_the_block_size_is_an_option_for_traces_hashed_with_other_blocks(tmp_path):
    path = _write(tmp_path, [_row(0, 40, [1, 2, 3]), _row(10, 40, [1, 2, 4])])
    with pytest.raises(TraceError, match="3 hash_ids for 40 input tokens"):
        load_trace(path)
    result = simulate("round_robin", f"trace:{path}", instances=1, block_tokens=16)
    assert list(result.requests["cached_tokens"]) == [0, 32]


def test_an_fdrouter_format_trace_still_loads_as_text_requests(tmp_path):
    path = _write(tmp_path, [{"arrival": 0.5, "prompt_tokens": 40, "output_tokens": 2}])
    trace = load_trace(path, time_scale=2.0)
    (request,) = list(trace)
    assert isinstance(request, Request) and request.arrival == 1.0 and trace.block_tokens is None


def test_a_slice_of_a_trace_keeps_the_ids_of_the_whole_trace():
    trace = load_trace(MOONCAKE_SYNTHETIC_TRACE)
    assert [r.id for r in trace[10:13]] == [10, 11, 12]
    assert [r.id for r in trace[10:13][1:]] == [11, 12]
    with pytest.raises(ValueError, match="step 1"):
        trace[::2]


def test_cache_tokens_bounds_each_instance_and_zero_turns_the_cache_off():
    trace = f"trace:{MOONCAKE_SYNTHETIC_TRACE}"
    off = simulate("round_robin", trace, instances=1, requests=300, cache_tokens=0).summary
    small = simulate("round_robin", trace, instances=1, requests=300, cache_tokens=100_000).summary
    big = simulate("round_robin", trace, instances=1, requests=300, cache_tokens=10**9).summary
    assert off["cache_hit_rate"] == 0 and off["cache_tokens"] == 0
    assert 0 < small["cache_hit_rate"] < big["cache_hit_rate"]
    assert small["cache_tokens"] == 100_000 // 512 * 512


def test_time_scale_and_a_mismatched_block_size_are_rejected_where_they_make_no_sense():
    with pytest.raises(ValueError, match="time_scale applies to trace"):
        simulate("round_robin", "uniform", requests=5, time_scale=0.5)
    requests = list(load_trace(MOONCAKE_SYNTHETIC_TRACE)[:3])
    with pytest.raises(ValueError, match="blocks are 512 tokens"):
        simulate("round_robin", requests, block_tokens=16)
