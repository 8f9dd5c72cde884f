"""Choosing the mock's engine by profile name, and the mock timing a profile the simulator's way."""

from __future__ import annotations

import dataclasses

import pytest

from fdrouter.sim.engine_profiles import engine_profile
from fdrouter.sim.kvcache import PrefixCache
from fdrouter.testing import MockBehavior
from fdrouter.testing.mock_backend import _behavior, _parser, main
from fdrouter.testing.scheduler import EngineScheduler, EngineSequence

from .helpers import COMPLETIONS, cached_tokens, stream_timed


def test_a_behavior_takes_an_engine_profile_by_name_at_construction_and_later():
    behavior = MockBehavior(engine="llama3-8b-a100")
    assert behavior.engine == engine_profile("llama3-8b-a100") and behavior.engine.name == "llama3-8b-a100"
    behavior.engine = "toy"
    assert behavior.engine == engine_profile("toy")
    behavior.engine = None
    assert behavior.engine is None
    with pytest.raises(ValueError, match="unknown engine 'h100'"):
        MockBehavior(engine="h100")


def test_the_cli_engine_flag_takes_a_profile_name_and_other_flags_override_its_numbers():
    parser = _parser()
    assert _behavior(parser, parser.parse_args(["--engine", "llama3-70b-8xa800"])).engine == engine_profile(
        "llama3-70b-8xa800")
    assert _behavior(parser, parser.parse_args(["--engine"])).engine == engine_profile("toy")
    tuned = _behavior(parser, parser.parse_args(["--engine", "llama3-8b-a100", "--max-batch", "4"])).engine
    assert tuned == dataclasses.replace(engine_profile("llama3-8b-a100"), max_batch=4)
    assert "llama3-70b-8xa800" in parser.format_help()


def test_an_unknown_engine_name_on_the_cli_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--engine", "h100"])
    assert exit_info.value.code == 2
    assert "unknown engine 'h100'" in capsys.readouterr().err


def test_the_scheduler_times_decode_steps_by_the_context_the_batch_holds():
    # The simulator's decode_run_time assumes the first decode step after a prefill reads the
    # prompt plus the first token; the mock must time the very same steps.
    engine = dataclasses.replace(engine_profile("llama3-8b-a100"), cache_blocks=0)
    scheduler = EngineScheduler(lambda admitted: None)
    seq = EngineSequence(completion_tokens=5, prompt_tokens=3000, hashes=())
    scheduler.queue(seq, engine, PrefixCache(0))
    seconds = []
    while (step := scheduler.next_step()) is not None:
        seconds.append(step.seconds)
        scheduler.finish_step(step)
    assert seconds[0] == engine.prefill_time(3000)
    assert seconds[1:] == [engine.step_time(1, 3000 + k) for k in range(1, 5)]
    assert sum(seconds[1:]) == pytest.approx(engine.decode_run_time(1, 3001, 4))


async def test_a_mock_on_a_scaled_profile_reports_the_cache_hit_and_answers(mock_backend_factory, session):
    engine = engine_profile("llama3-8b-a100").scaled(0.001)  # a 1000x faster A100: milliseconds
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3, engine=engine))
    prompt = "[block 1] " + "tokens of a shared document " * 300
    _, _, chunks = await stream_timed(session, backend.url + COMPLETIONS, {"prompt": prompt})
    assert cached_tokens(chunks[-1]) == 0
    _, _, chunks = await stream_timed(session, backend.url + COMPLETIONS, {"prompt": prompt + " more"})
    assert cached_tokens(chunks[-1]) == len(prompt) // 64 * 16
