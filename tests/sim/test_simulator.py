"""The simulator's loop and instance model: hand-timed cases, queueing theory, determinism."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence

import pandas as pd
import pytest

from fdrouter.policies import available_policies
from fdrouter.policies.base import RoutingFacts
from fdrouter.sim import (
    SUMMARY_KEYS,
    ClusterConfig,
    Request,
    Simulator,
    make_workload,
    simulate,
    synthetic_prompt,
)
from fdrouter.sim.blocks import BlockHasher
from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import text_block_hashes
from fdrouter.sim.workloads import TextBank

NO_CACHE = EngineModel(cache_blocks=0)


def _two_requests() -> list[Request]:
    # A: 100-token prompt, 10 tokens out, at 0; B: 100-token prompt, 3 tokens out, at 10 ms
    return [Request(0, 0.0, synthetic_prompt(100, "a"), 10), Request(1, 0.01, synthetic_prompt(100, "b"), 3)]


def test_mixed_instance_batches_a_late_request_at_the_next_decode_step():
    rows = simulate("round_robin", _two_requests(), instances=1, engine=NO_CACHE).requests.set_index("request_id")
    # A: prefill 2 ms + 100 x 50 us = 7 ms (first token); decode steps of 4 ms (batch of one).
    # B arrives at 10 ms, mid-step: admitted at the step boundary 11 ms, prefilled until 18 ms.
    # Then both decode at 4.1 ms a step: B needs 2 more tokens (26.2 ms), A 8 more, of which
    # 6 alone at 4 ms: 26.2 + 24 = 50.2 ms.
    assert rows.loc[0, "ttft"] == pytest.approx(0.007)
    assert rows.loc[1, "queue_wait"] == pytest.approx(0.001)
    assert rows.loc[1, "ttft"] == pytest.approx(0.008)
    assert rows.loc[1, "finish"] == pytest.approx(0.0262)
    assert rows.loc[0, "finish"] == pytest.approx(0.0502)
    assert rows.loc[1, "tpot"] == pytest.approx(0.0041)


def test_splitwise_timeline_prefill_then_transfer_then_decode():
    result = simulate(workload=_two_requests(), splitwise=True, prefill=1, decode=1, engine=NO_CACHE)
    rows = result.requests.set_index("request_id")
    # A: prefill until 7 ms, KV transfer 1 ms + 100 x 5 us, first decode step of 4 ms.
    assert rows.loc[0, "ttft"] == pytest.approx(0.0125)
    # B: prefill 10-17 ms, KV lands at 18.5 ms, joins A's batch at the step boundary 20.5 ms.
    assert rows.loc[1, "decode_wait"] == pytest.approx(0.002)
    assert rows.loc[1, "ttft"] == pytest.approx(0.0146)
    assert rows.loc[1, "finish"] == pytest.approx(0.0328)
    assert rows.loc[0, "finish"] == pytest.approx(0.0488)


def test_mean_queue_wait_matches_md1_at_load_0_7():
    # One instance serving one request at a time, each a constant D (a prefill with no
    # per-token cost and one output token), Poisson arrivals: an M/D/1 queue.
    d, rho = 0.01, 0.7
    engine = EngineModel(prefill_base_s=d, prefill_per_token_s=0.0, max_batch=1, cache_blocks=0)
    waits = [
        simulate("round_robin", "uniform", instances=1, requests=20_000, rate=rho / d, seed=seed, engine=engine,
                 workload_options={"prompt_tokens": (64, 64), "output_tokens": (1, 1)}).requests["queue_wait"].mean()
        for seed in range(4)
    ]
    expected = rho * d / (2 * (1 - rho))  # Pollaczek-Khinchine for deterministic service
    assert sum(waits) / len(waits) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("policy", available_policies())
def test_same_seed_gives_the_same_frame_for_every_policy(policy):
    def run(seed):
        return simulate(policy, "shared-prefix", instances=4, requests=300, rate=80, seed=seed).requests

    first = run(3)
    pd.testing.assert_frame_equal(first, run(3))
    assert not first.equals(run(4))


def test_results_do_not_depend_on_the_string_hash_salt():
    # kvcache hashes blocks with the salted hash(); only as dict keys, so no ordering may
    # depend on it. Run every policy in a process with another salt and compare.
    code = (
        "import json, sys\n"
        "from fdrouter.sim import simulate\n"
        "from fdrouter.policies import available_policies\n"
        "out = {p: simulate(p, 'shared-prefix', instances=4, requests=200, rate=80, seed=5)"
        ".requests[['instance', 'cached_tokens', 'finish']].to_json() for p in available_policies()}\n"
        "json.dump(out, sys.stdout)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                      text=True, check=True, timeout=60).stdout)
    for policy, frame in other.items():
        mine = simulate(policy, "shared-prefix", instances=4, requests=200, rate=80, seed=5).requests
        assert mine[["instance", "cached_tokens", "finish"]].to_json() == frame, policy


def test_splitwise_uses_both_roles_and_every_instance():
    result = simulate(workload="uniform", splitwise=True, prefill=2, decode=3, requests=400, rate=60, seed=1)
    frame = result.requests
    assert set(frame["prefill_instance"]) == set(result.instances["prefill"])
    assert set(frame["decode_instance"]) == set(result.instances["decode"])
    assert (frame["instance"] == frame["decode_instance"]).all()
    assert (frame["ttft"] > frame["queue_wait"]).all()
    assert (frame["e2e"] >= frame["ttft"]).all()
    summary = result.summary
    assert summary["mode"] == "splitwise" and summary["policy"] == "process_tokens/request_num"
    assert summary["load_imbalance"] == max(summary["prefill_load_imbalance"], summary["decode_load_imbalance"])


def test_shared_prefix_hits_the_cache_and_uniform_does_not():
    cache_policy = "cache_aware" if "cache_aware" in available_policies() else "request_num"
    shared = simulate(cache_policy, "shared-prefix", requests=1500, rate=40, seed=2).summary
    spread = simulate("round_robin", "shared-prefix", requests=1500, rate=40, seed=2).summary
    unique = simulate(cache_policy, "uniform", requests=1500, rate=40, seed=2).summary
    assert shared["cache_hit_rate"] > 0.5
    if cache_policy == "cache_aware":
        assert shared["cache_hit_rate"] > spread["cache_hit_rate"]
    assert unique["cache_hit_rate"] < 0.01


def test_summary_has_the_documented_keys_and_sane_values():
    result = simulate("round_robin", "long-short", instances=3, requests=300, rate=20, seed=0)
    summary = result.summary
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["requests"] == 300 and summary["policy"] == "round_robin" and summary["workload"] == "long-short"
    assert summary["load_imbalance"] == pytest.approx(1.0)  # 300 round-robin requests on 3 instances
    assert summary["ttft_p50"] <= summary["ttft_p99"] and summary["e2e_p50"] <= summary["e2e_p99"]
    assert 0 < summary["throughput_rps"] <= 25
    columns = {"request_id", "arrival", "instance", "prompt_tokens", "cached_tokens", "output_tokens",
               "ttft", "tpot", "e2e", "queue_wait"}
    assert columns <= set(result.requests.columns)
    assert list(result.requests["request_id"]) == list(range(300))
    assert result.per_instance()["requests"].sum() == 300


class _Recorder:
    """A policy that remembers what it was shown."""

    name = "recorder"

    def __init__(self, needs: frozenset[str]) -> None:
        self.needs = needs
        self.seen: list[tuple[RoutingFacts, list[tuple[int, object]]]] = []

    def choose(self, candidates: Sequence, facts: RoutingFacts):
        self.seen.append((facts, [(c.in_flight, c.remote) for c in candidates]))
        return min(candidates, key=lambda c: c.in_flight)


def test_facts_carry_only_what_the_policy_needs():
    bare = _Recorder(frozenset())
    simulate(bare, "multi-turn", instances=2, requests=50, rate=20, seed=0)
    facts = bare.seen[-1][0]
    assert facts.prompt_text is None and facts.prompt_tokens == 0 and facts.session_key is None
    assert facts.now > 0

    full = _Recorder(frozenset({"prompt_text", "session_key"}))
    simulate(full, "multi-turn", instances=2, requests=50, rate=20, seed=0)
    facts = full.seen[-1][0]
    assert facts.prompt_text and facts.prompt_tokens == len(facts.prompt_text) // 4
    assert facts.session_key.startswith("conv-")


def test_remote_metrics_are_scraped_every_interval_and_stale_in_between():
    policy = _Recorder(frozenset({"remote_metrics"}))
    simulate(policy, "uniform", instances=2, requests=400, rate=100, seed=0, scrape_interval=0.5)
    ages = []
    for facts, cands in policy.seen:
        for _, remote in cands:
            assert remote is not None  # the first scrape runs at time 0
            ages.append(facts.now - remote.scraped_at)
    assert 0 <= min(ages) and max(ages) < 0.5
    assert len({round(age, 6) for age in ages}) > 10  # genuinely stale, not refreshed per request
    assert any(remote.running > 0 for _, cands in policy.seen for _, remote in cands)


def test_in_flight_counts_dispatched_requests_and_comes_back_to_zero():
    policy = _Recorder(frozenset({"prompt_tokens"}))
    requests = make_workload("uniform", requests=300, rate=200, seed=0)
    sim = Simulator(ClusterConfig(instances=2), {"mixed": policy}, requests)
    assert len(sim.run()) == 300
    assert max(n for _, cands in policy.seen for n, _ in cands) > 1
    assert [(i.in_flight, i.in_flight_tokens, i.running, i.waiting) for i in sim.instances] == [(0, 0, 0, 0)] * 2
    assert sum(i.requests_total for i in sim.instances) == 300


def test_a_policy_must_return_one_of_its_candidates():
    class Rogue:
        name, needs = "rogue", frozenset()

        def choose(self, candidates, facts):
            return object()

    with pytest.raises(TypeError, match="rogue"):
        simulate(Rogue(), "uniform", requests=5)


def test_bad_arguments_raise_value_error_naming_the_problem():
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        simulate("nope", requests=5)
    with pytest.raises(ValueError, match="unknown workload"):
        simulate("round_robin", "nope", requests=5)
    with pytest.raises(ValueError, match="rate"):
        simulate("round_robin", requests=5, rate=0)
    with pytest.raises(ValueError, match="not accepted"):
        simulate("round_robin", requests=5, policy_options={"bogus": 1})
    with pytest.raises(ValueError, match="arrival order"):
        simulate("round_robin", [Request(0, 1.0, "x" * 80, 1), Request(1, 0.5, "y" * 80, 1)])


def test_block_hasher_with_a_prefix_hint_equals_text_block_hashes():
    bank = TextBank(random.Random(0))
    hasher = BlockHasher(16)
    for n in (0, 10, 64, 65, 300, 1000):
        prefix = bank.piece(n)
        for tail in ("", "x", bank.piece(63), bank.piece(500)):
            assert hasher.hashes(prefix + tail, prefix) == text_block_hashes(prefix + tail, 16)
    assert hasher.hashes("abc" * 100, "zzz") == text_block_hashes("abc" * 100, 16)  # a wrong hint is ignored
    for name in ("shared-prefix", "multi-turn"):  # hints as the workloads give them: prompts chain turn by turn
        for request in make_workload(name, requests=300, rate=50.0, seed=0):
            assert hasher.hashes(request.prompt, request.prefix) == text_block_hashes(request.prompt, 16)


def test_progress_bar_runs(capsys):
    assert simulate("round_robin", "uniform", requests=50, progress=True).summary["requests"] == 50
    assert "50/50" in capsys.readouterr().err
