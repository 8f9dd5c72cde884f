"""The batch planner's decisions, alone, and applied by the simulator and by the mock backend alike."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from fdrouter.sim.batching import BatchPlanner
from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import PrefixCache

ENGINE = EngineModel(prefill_base_s=0.002, prefill_per_token_s=0.001, decode_base_s=0.004,
                     decode_per_seq_s=0.001, max_batch=2, cache_blocks=64, block_tokens=16)


@dataclass
class Req:
    """The least a request needs to be planned."""

    name: str
    prompt_tokens: int
    hashes: Sequence[int] | None = field(default_factory=list)
    cached_tokens: int = 0


def test_admits_from_the_head_of_the_queue_while_the_batch_has_room() -> None:
    waiting = deque(Req(n, 10) for n in "abc")
    planner = BatchPlanner(ENGINE, PrefixCache(64))
    assert [r.name for r in planner.plan(waiting, running=1)[0]] == ["a"]
    assert [r.name for r in waiting] == ["b", "c"]
    assert planner.plan(waiting, running=2)[0] == []  # full: nobody admitted
    assert [r.name for r in planner.plan(waiting, running=0)[0]] == ["b", "c"]
    assert planner.has_room(1) and not planner.has_room(2)


def test_a_prefill_iteration_costs_the_sum_of_the_uncached_prefills() -> None:
    cache = PrefixCache(64)
    cache.insert([1, 2])
    waiting = deque([Req("hit", 40, [1, 2, 3]), Req("miss", 40, [7, 8])])
    admitted, prefill, seconds = BatchPlanner(ENGINE, cache).plan(waiting, running=0)
    assert prefill and [r.cached_tokens for r in admitted] == [32, 0]
    assert seconds == ENGINE.prefill_time(40 - 32) + ENGINE.prefill_time(40)
    assert all(r.hashes is None for r in admitted)  # looked up once, then dropped


def test_a_request_admitted_after_another_hits_the_blocks_that_one_just_cached() -> None:
    waiting = deque([Req("first", 48, [1, 2, 3]), Req("second", 48, [1, 2, 9])])
    admitted, _, _ = BatchPlanner(ENGINE, PrefixCache(64)).plan(waiting, running=0)
    assert [r.cached_tokens for r in admitted] == [0, 32]


def test_without_admissions_the_iteration_is_one_decode_step_of_the_batch() -> None:
    planner = BatchPlanner(ENGINE, PrefixCache(64))
    assert planner.plan(deque(), running=2) == ([], False, ENGINE.step_time(2))
    assert planner.plan(deque(), running=0) == ([], False, 0.0)  # idle


def test_a_decode_instance_admits_into_the_decode_step_without_a_prefill_or_a_lookup() -> None:
    waiting = deque([Req("a", 40, [1, 2])])
    admitted, prefill, seconds = BatchPlanner(ENGINE, None).plan(waiting, running=1)
    assert [r.name for r in admitted] == ["a"] and not prefill
    assert seconds == ENGINE.step_time(2)  # the newcomer decodes in this very step
    assert admitted[0].cached_tokens == 0 and admitted[0].hashes == [1, 2]
