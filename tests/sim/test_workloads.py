"""Named workloads: the right number of sane requests, seeded, with the sharing they promise."""

from __future__ import annotations

import pytest

from fdrouter.sim import Request, available_workloads, make_workload, synthetic_prompt
from fdrouter.sim.kvcache import text_block_hashes
from fdrouter.sim.workloads import WORKLOADS


def _take(name: str, n: int = 400, seed: int = 0) -> list[Request]:
    return list(make_workload(name, requests=n, rate=50.0, seed=seed))


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_workload_yields_sane_requests_in_arrival_order(name):
    requests = _take(name)
    assert len(requests) == 400
    assert len({r.id for r in requests}) == 400
    arrivals = [r.arrival for r in requests]
    assert arrivals == sorted(arrivals) and arrivals[0] >= 0
    assert all(r.output_tokens >= 1 and r.prompt_tokens >= 1 for r in requests)
    assert all(r.prefix is None or r.prompt.startswith(r.prefix) for r in requests)
    # Poisson at 50/s: 400 requests take about 8 s
    assert 4 < arrivals[-1] < 16


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workloads_are_seeded(name):
    assert _take(name, 50, seed=1) == _take(name, 50, seed=1)
    assert _take(name, 50, seed=1) != _take(name, 50, seed=2)


def test_shared_prefix_prompts_share_a_few_long_system_prompts():
    requests = _take("shared-prefix")
    tenants = {r.session for r in requests}
    assert 2 <= len(tenants) <= 16
    by_tenant = {}
    for r in requests:
        by_tenant.setdefault(r.session, []).append(r)
    for group in by_tenant.values():
        first = text_block_hashes(group[0].prompt)
        for other in group[1:]:
            shared = sum(1 for a, b in zip(first, text_block_hashes(other.prompt), strict=False) if a == b)
            assert shared >= 150  # 3000-token system prompt = 187 full blocks
    assert len({r.prompt for r in requests}) == len(requests)  # the user part is unique


def test_multi_turn_prompts_grow_within_a_conversation():
    requests = _take("multi-turn", 600)
    last: dict[str, str] = {}
    grew = 0
    for r in requests:
        previous = last.get(r.session)
        if previous is not None:
            assert r.prompt.startswith(previous) and len(r.prompt) > len(previous)
            grew += 1
        last[r.session] = r.prompt
    assert grew > 100 and len(last) > 20


@pytest.mark.parametrize("name", ["uniform", "long-short"])
def test_unshared_workloads_never_share_a_first_block(name):
    requests = _take(name)
    firsts = [text_block_hashes(r.prompt)[:1] for r in requests]
    assert len({tuple(f) for f in firsts if f}) == sum(1 for f in firsts if f)


def test_long_short_mixes_long_and_short():
    tokens = [r.prompt_tokens for r in _take("long-short")]
    assert min(tokens) < 300 and max(tokens) > 3000


def test_synthetic_prompts_have_the_asked_length_and_differ_from_the_first_block():
    a, b = synthetic_prompt(500, "a"), synthetic_prompt(500, "b")
    assert Request(0, 0.0, a, 1).prompt_tokens == 500
    assert text_block_hashes(a)[0] != text_block_hashes(b)[0]
    assert synthetic_prompt(100_000, "x").startswith("[x]")


def test_unknown_workloads_options_and_rates_are_value_errors():
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        make_workload("nope", requests=1, rate=1.0, seed=0)
    with pytest.raises(ValueError, match="rate must be > 0"):
        make_workload("uniform", requests=1, rate=0.0, seed=0)
    with pytest.raises(ValueError, match="uniform"):
        make_workload("uniform", requests=1, rate=1.0, seed=0, bogus=3)
    assert "trace:PATH" in available_workloads()
