"""SimInstance's engine against the mock backend's: the same arrivals, the same decisions.

Both apply ``fdrouter.sim.batching.BatchPlanner``: the simulator jumps between events, the mock
sleeps every iteration out. Here the mock's scheduler is stepped on a virtual clock (its
``next_step``/``finish_step``, what its asyncio loop does between sleeps), and both run the
same requests. Engine times are multiples of 2**-15 s and arrivals sit on a 2**-24 s grid,
so both clocks are exact; arrival k is ``(2k + 1) * 2**-24`` past a multiple of 2**-15, so
no arrival falls on an iteration boundary (those are the last idle restart's arrival plus
multiples of 2**-15), where "which comes first" would be a race on a real mock. The two must
agree to the bit on who is admitted when, what each found in the cache, what each prefill
cost, and when each first token and each finish came.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from fdrouter.sim.batching import BatchPlanner
from fdrouter.sim.blocks import BlockHasher
from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.events import Kind
from fdrouter.sim.instance import DECODE, MIXED, PREFILL, Job, SimInstance
from fdrouter.sim.kvcache import PrefixCache
from fdrouter.testing.openai_shapes import prompt_blocks
from fdrouter.testing.scheduler import EngineScheduler, EngineSequence
from fdrouter.validate import estimate_tokens

TICK = 2.0**-12
ENGINE = EngineModel(prefill_base_s=8 * TICK, prefill_per_token_s=TICK / 8, decode_base_s=16 * TICK,
                     decode_per_seq_s=2 * TICK, max_batch=3, cache_blocks=12, block_tokens=16)
SHARED = "You are a terse assistant. " * 12  # 324 characters: five full 64-character blocks


@dataclass(frozen=True)
class Arrival:
    """One request reaching the instance."""

    at: float
    rid: int
    prompt: str
    output_tokens: int


@dataclass(frozen=True)
class Outcome:
    """What happened to one request, as the two engines must agree on it."""

    cached_tokens: int
    first_token: float | None  # None on a prefill instance: its one token leaves with the request
    leave: float


class Tagged(EngineSequence):
    """A mock engine sequence that knows its request's id."""

    __slots__ = ("rid",)

    def __init__(self, rid: int, completion_tokens: int, prompt_tokens: int, hashes: Sequence[int]) -> None:
        super().__init__(completion_tokens, prompt_tokens, hashes)
        self.rid = rid


class Recording(BatchPlanner):
    """A planner that logs its decisions: (time, admitted ids, prefill, seconds) for each admission."""

    __slots__ = ("now", "log")

    def __init__(self, engine: EngineModel, cache: PrefixCache | None) -> None:
        super().__init__(engine, cache)
        self.now = 0.0
        self.log: list[tuple[float, list[int], bool, float]] = []

    def plan(self, waiting, running, context=0):  # type: ignore[no-untyped-def]  # records whatever it plans
        decision = admitted, prefill, seconds = super().plan(waiting, running, context)
        if admitted:
            self.log.append((self.now, [seq.rid for seq in admitted], prefill, seconds))
        return decision


def run_simulator(role: str, arrivals: Sequence[Arrival]) -> tuple[dict[int, Outcome], list]:
    """Drive one SimInstance through its enqueue/wake events, as the simulator's loop does."""
    inst = SimInstance("http://sim", role, 0, ENGINE)
    planner = inst.planner = Recording(ENGINE, inst.cache)
    hasher = BlockHasher(ENGINE.block_tokens)
    queue: list[tuple[float, int, int, object]] = []
    for n, a in enumerate(arrivals):
        job = Job(a.rid, a.at, None, estimate_tokens(a.prompt), hasher.hashes(a.prompt), a.output_tokens)
        queue.append((a.at, Kind.ARRIVAL, n, job))
    heapq.heapify(queue)
    seq = len(queue)
    outcomes: dict[int, Outcome] = {}
    for _ in range(100 * len(arrivals) + 100):  # bounded: an engine that stops advancing fails, not hangs
        if not queue:
            break
        now, kind, _, payload = heapq.heappop(queue)
        planner.now = now
        if kind == Kind.ARRIVAL:
            event = inst.enqueue(payload, now)  # type: ignore[arg-type]
        else:
            done, event = inst.wake(now, payload[1])  # type: ignore[index]
            for job in done:
                first = None if role == PREFILL else job.first_token
                outcomes[job.rid] = Outcome(job.cached_tokens, first, now)
        if event is not None:
            seq += 1
            heapq.heappush(queue, (event.time, event.kind, seq, event.payload))
    assert not queue, f"the instance is still busy after {seq} events: it stopped advancing"
    return outcomes, planner.log


def run_mock(role: str, arrivals: Sequence[Arrival]) -> tuple[dict[int, Outcome], list]:
    """Step the mock backend's scheduler on a virtual clock, queueing each request when it arrives."""
    scheduler = EngineScheduler(lambda admitted: None)
    cache = None if role == DECODE else PrefixCache(ENGINE.cache_blocks, ENGINE.block_tokens)
    planner = scheduler.planner = Recording(ENGINE, cache)
    pending = sorted(arrivals, key=lambda a: a.at)
    firsts: dict[int, float] = {}
    outcomes: dict[int, Outcome] = {}
    now = 0.0
    while pending or scheduler.running or scheduler.waiting:
        while pending and pending[0].at <= now:
            a = pending.pop(0)
            tokens, hashes = prompt_blocks({"prompt": a.prompt}, False, None if role == DECODE else 16)
            scheduler.queue(Tagged(a.rid, 1 if role == PREFILL else a.output_tokens, tokens, hashes), ENGINE, cache)
        planner.now = now
        step = scheduler.next_step()
        if step is None:  # idle until the next arrival
            now = pending[0].at
            continue
        now += step.seconds
        scheduler.finish_step(step)
        for seq in step.advancing:
            rid = seq.rid  # type: ignore[attr-defined]
            firsts.setdefault(rid, now)
            if seq.finished:
                first = None if role == PREFILL else firsts[rid]
                outcomes[rid] = Outcome(seq.cached_tokens, first, now)
    return outcomes, planner.log


def _arrivals(gaps: Sequence[int], outputs: Sequence[int], prompts: Sequence[str]) -> list[Arrival]:
    """Request k arrives ``gaps[k]`` ticks after request k-1, give or take its own residue (see the top)."""
    assert len(gaps) <= 256  # distinct odd residues below 2**-15
    ticks, out = 0, []
    for rid, (gap, tokens, prompt) in enumerate(zip(gaps, outputs, prompts, strict=True)):
        ticks += gap
        out.append(Arrival(ticks * TICK + (2 * rid + 1) * 2.0**-24, rid, prompt, tokens))
    return out


def _prompt(kind: int, rid: int) -> str:
    """Three kinds: the shared prefix plus a tail, a short unique prompt, a long unique prompt."""
    tail = f" question {rid:04d} " * (2 + rid % 5)
    return [SHARED + tail, tail, f"document {rid:04d} " * 40][kind % 3]


def _scenario(gaps: Sequence[int], outputs: Sequence[int], kinds: Sequence[int]) -> list[Arrival]:
    return _arrivals(gaps, outputs, [_prompt(k, rid) for rid, k in enumerate(kinds)])


# a burst (more than max_batch at once), quiet gaps, shared prefixes, evictions, 1-token answers
BURSTY = _scenario(gaps=[0, 1, 2, 3, 90, 1, 1, 1, 1, 400, 5, 60, 2, 2, 30, 700, 0, 0, 0, 0],
                   outputs=[4, 1, 6, 2, 3, 8, 1, 2, 5, 3, 7, 2, 1, 4, 6, 2, 3, 3, 9, 1],
                   kinds=[0, 0, 1, 2, 0, 0, 2, 1, 0, 0, 2, 2, 0, 1, 0, 0, 0, 2, 1, 0])


def test_the_mock_and_the_simulator_admit_prefill_and_finish_alike_in_mixed_mode() -> None:
    sim, sim_log = run_simulator(MIXED, BURSTY)
    mock, mock_log = run_mock(MIXED, BURSTY)
    assert mock == sim and len(sim) == len(BURSTY)
    assert mock_log == sim_log  # admission times, admitted ids in order, prefill costs
    # the scenario exercises what it claims: queueing, batched prefills, cache hits
    assert any(len(ids) > 1 for _, ids, _, _ in sim_log)
    assert any(o.cached_tokens > 0 for o in sim.values())
    assert [rid for _, ids, _, _ in sim_log for rid in ids] == sorted(sim)  # FIFO


def test_the_mock_and_the_simulator_agree_on_prefill_and_decode_instances() -> None:
    for role in (PREFILL, DECODE):
        sim, sim_log = run_simulator(role, BURSTY)
        mock, mock_log = run_mock(role, BURSTY)
        assert mock == sim, role
        assert mock_log == sim_log, role
    assert all(prefill is False for _, _, prefill, _ in sim_log)  # decode: no prefill iterations


def test_a_request_for_no_tokens_still_leaves_a_decode_instance_after_one_step() -> None:
    # as on the mock, where max_tokens=0 finishes at the end of the first decode step
    arrivals = _scenario(gaps=[0, 3], outputs=[0, 2], kinds=[0, 1])
    sim, _ = run_simulator(DECODE, arrivals)
    assert sim == run_mock(DECODE, arrivals)[0]
    assert sim[0].leave == sim[0].first_token == arrivals[0].at + ENGINE.step_time(1)


@settings(max_examples=60)
@given(
    role=st.sampled_from([MIXED, PREFILL, DECODE]),
    requests=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 12), st.integers(0, 2)),
                      min_size=1, max_size=25),
)
def test_the_mock_and_the_simulator_agree_on_any_arrivals(role: str, requests: list[tuple[int, int, int]]) -> None:
    # output 0 is what max_tokens=0 makes on the mock
    arrivals = _scenario(*(list(column) for column in zip(*requests, strict=True)))
    sim, sim_log = run_simulator(role, arrivals)
    mock, mock_log = run_mock(role, arrivals)
    assert mock == sim
    assert mock_log == sim_log
