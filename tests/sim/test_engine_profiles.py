"""Engine profiles: derived from published numbers, super-linear prefill, context-dependent decode."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fdrouter.sim import EngineModel, available_engines, engine_profile, simulate
from fdrouter.sim.engine_profiles import ENGINE_PROFILES
from fdrouter.sim.workloads import Request, synthetic_prompt

# The Mooncake paper's Table 1 (FAST'25): LLaMA3-70B, 8 x A800.
L, D, A, B = 80, 8192, 4, 22
G = 8 * 312e12


def _flops(n: int) -> float:
    return L * (A * n * n * D + B * n * D * D)


def test_the_default_profile_is_the_toy_model_every_existing_result_was_computed_with():
    toy = engine_profile("toy")
    assert available_engines()[0] == "toy"
    assert toy == EngineModel()  # the name does not take part in equality
    assert toy.prefill_per_token_sq_s == 0 and toy.decode_per_context_token_s == 0


def test_the_70b_profile_prefills_a_partly_cached_prompt_at_the_cost_of_the_flops_difference():
    engine = engine_profile("llama3-70b-8xa800")
    mfu = L * B * D * D / (G * engine.prefill_per_token_s)  # the MFU the profile states
    assert mfu == pytest.approx(0.5)
    for cached, uncached in [(0, 8192), (10_000, 5_000), (100_000, 512)]:
        expected = (_flops(cached + uncached) - _flops(cached)) / (G * mfu)
        assert engine.prefill_time(uncached, cached) - engine.prefill_base_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["llama3-70b-8xa800", "llama3-8b-a100"])
def test_prefill_grows_super_linearly_and_costs_more_after_a_long_cached_prefix(name):
    engine = engine_profile(name)
    one = engine.prefill_time(16_000) - engine.prefill_base_s
    assert engine.prefill_time(32_000) - engine.prefill_base_s > 2 * one * 1.05
    assert engine.prefill_time(1_000, cached_tokens=30_000) > engine.prefill_time(1_000)


@pytest.mark.parametrize("name", ["llama3-70b-8xa800", "llama3-8b-a100"])
def test_a_decode_step_slows_with_the_batch_and_with_the_context_it_reads(name):
    engine = engine_profile(name)
    assert engine.step_time(64) > engine.step_time(1)
    assert engine.step_time(8, context_tokens=200_000) > engine.step_time(8, context_tokens=1_000)


def test_kv_capacity_follows_from_layers_kv_heads_head_dim_dtype_and_memory_left_after_the_weights():
    kv_bytes_per_token = 2 * 80 * 8 * 128 * 2  # K and V, layers, KV heads, head dim, BF16
    assert kv_bytes_per_token == 327_680  # Mooncake's n * l * (2d / gqa) * s for one token
    tokens = (8 * 80e9 * 0.9 - 70.6e9 * 2) // kv_bytes_per_token
    engine = engine_profile("llama3-70b-8xa800")
    assert engine.cache_tokens == tokens // engine.block_tokens * engine.block_tokens
    small = engine_profile("llama3-8b-a100")
    assert small.cache_tokens == (80e9 * 0.9 - 8.03e9 * 2) // (2 * 32 * 8 * 128 * 2) // 16 * 16


def test_every_profile_cites_its_sources_in_its_docstring():
    for name, factory in ENGINE_PROFILES.items():
        doc = factory.__doc__ or ""
        assert len(doc) > 80, name
        if name != "toy":
            assert "Source" in doc, name


def test_an_unknown_profile_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="unknown engine 'h200'.*toy"):
        engine_profile("h200")


def test_a_run_of_decode_steps_costs_the_sum_of_its_growing_steps():
    engine = engine_profile("llama3-8b-a100")
    steps = [engine.step_time(5, 10_000 + 5 * k) for k in range(40)]
    assert engine.decode_run_time(5, 10_000, 40) == pytest.approx(math.fsum(steps), rel=1e-12)
    assert engine.decode_run_time(5, 10_000, 0) == 0.0


def test_scaling_time_scales_every_duration_and_keeps_the_capacity():
    engine = engine_profile("llama3-70b-8xa800")
    fast = engine.scaled(0.01)
    assert fast.prefill_time(5_000, 7_000) == pytest.approx(engine.prefill_time(5_000, 7_000) * 0.01)
    assert fast.step_time(9, 50_000) == pytest.approx(engine.step_time(9, 50_000) * 0.01)
    assert (fast.cache_blocks, fast.max_batch) == (engine.cache_blocks, engine.max_batch)
    with pytest.raises(ValueError):
        engine.scaled(0)


def test_reblocking_the_cache_keeps_its_capacity_in_tokens():
    engine = engine_profile("llama3-70b-8xa800").with_cache(block_tokens=512)
    assert engine.block_tokens == 512 and engine.cache_tokens == engine_profile("llama3-70b-8xa800").cache_tokens // 512 * 512
    assert engine.with_cache(cache_tokens=3_000_000).cache_blocks == 3_000_000 // 512


def test_the_simulator_times_a_decode_run_by_its_growing_context():
    # one request alone: prefill (its first token), then output - 1 decode steps whose context,
    # prompt plus tokens generated, grows a token a step
    engine = dataclasses.replace(engine_profile("llama3-8b-a100"), cache_blocks=0)
    prompt, output = 4_000, 50
    result = simulate("round_robin", [Request(0, 0.0, synthetic_prompt(prompt, "x"), output)], instances=1,
                      engine=engine)
    row = result.requests.iloc[0]
    assert row.ttft == pytest.approx(engine.prefill_time(prompt))
    assert row.e2e == pytest.approx(engine.prefill_time(prompt) + engine.decode_run_time(1, prompt + 1, output - 1))
    assert result.summary["engine"] == "llama3-8b-a100"


def test_simulate_takes_an_engine_by_name():
    by_name = simulate("round_robin", "uniform", requests=50, instances=2, engine="llama3-8b-a100").summary
    by_model = simulate("round_robin", "uniform", requests=50, instances=2,
                        engine=engine_profile("llama3-8b-a100")).summary
    assert by_name == by_model and by_name["engine"] == "llama3-8b-a100"
    with pytest.raises(ValueError, match="unknown engine"):
        simulate("round_robin", "uniform", requests=5, engine="nope")
