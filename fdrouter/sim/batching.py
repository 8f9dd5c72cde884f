"""Continuous batching decisions, shared by the simulator's instances and the mock backend.

Iteration-level continuous batching as in vLLM (V0 scheduler, its default) and FastDeploy,
timed by ``EngineModel``:

- Requests wait in a FIFO queue; at each iteration boundary the engine admits from its head
  while fewer than ``max_batch`` sequences run.
- Admission is when the prefix cache is looked up (``PrefixCache.lookup_and_insert``), in
  admission order, so a waiting request may hit the blocks of one admitted just before it.
- If any admitted request needs a prefill, the next iteration prefills all of them together
  and costs the sum of their ``prefill_time(prompt - cached, cached)``; running decodes pause
  for it (prefill first, no chunked prefill). Each prefilled request has its first token after
  it. A cache hit never counts more tokens than the prompt has (a trace's last block may be
  partial).
- Otherwise the iteration is one decode step of ``step_time(batch, context)``: one token for
  every running sequence, ``context`` being the tokens they hold (the caller's count of the
  running batch, plus the prompts of sequences a decode instance admits now).
- A PD decode instance (no prefix cache here) receives KV caches computed: its requests
  never prefill, and their first token comes with their first decode step.

``BatchPlanner.plan`` makes those decisions and nothing else: no clock, no I/O. Its callers
apply them: ``fdrouter.sim.instance.SimInstance`` in simulated time (it jumps to the end of
an iteration, or of a run of identical decode steps), the mock backend's scheduler
(``fdrouter.testing.scheduler``) in real time (it sleeps each iteration out). One planner,
so the two cannot drift apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol, TypeAlias, TypeVar

from .engine_model import EngineModel
from .kvcache import PrefixCache

__all__ = ["BatchPlanner", "Batchable", "Iteration"]


class Batchable(Protocol):
    """What the planner reads and writes on a request: its prompt, and the cache hit it finds."""

    prompt_tokens: int
    hashes: Sequence[int] | None
    """Chained prefix-cache block hashes of the prompt; the planner drops them once looked up."""
    cached_tokens: int
    """Set on admission: the prompt tokens found in the prefix cache."""


S = TypeVar("S", bound=Batchable)


Iteration: TypeAlias = tuple[list[S], bool, float]
"""The planner's decision for the next iteration: ``(admitted, prefill, seconds)``.

- ``admitted``: taken from the head of the queue, in order, into the batch (their cache looked
  up if the instance prefills);
- ``prefill``: True for a prefill iteration of exactly ``admitted``, False for one decode step
  of the whole batch (``admitted`` included);
- ``seconds``: how long the iteration takes: the sum of the prefills, or one decode step (0.0
  when nothing runs).

A plain tuple, not a NamedTuple: the simulator plans ~3 times per request, and building a
NamedTuple costs it about 1% of a run.
"""


class BatchPlanner:
    """Decides, at an iteration boundary, what an engine admits and what it runs next.

    ``engine`` and ``cache`` may be replaced between calls (the mock backend takes whatever
    model its behavior holds now). ``cache`` is the prefix cache the prefills look up; None on a
    PD decode instance, which never prefills.
    """

    __slots__ = ("engine", "cache")

    def __init__(self, engine: EngineModel, cache: PrefixCache | None) -> None:
        self.engine = engine
        self.cache = cache

    def has_room(self, running: int) -> bool:
        """Whether a batch of ``running`` sequences admits another at the next boundary."""
        return running < self.engine.max_batch

    def plan(self, waiting: deque[S], running: int, context: int = 0) -> Iteration[S]:
        """Admit from the head of ``waiting`` (popped) beside ``running`` sequences; the next iteration.

        Each admitted request of a prefilling instance gets its ``cached_tokens`` (and loses its
        ``hashes``). ``running`` counts the batch before admission, prefilled sequences only: an
        iteration ends before the next is planned, so none is half-way through a prefill.
        ``context`` is the tokens those ``running`` sequences hold (prompt plus generated); only
        an engine whose step time grows with context reads it.
        """
        engine = self.engine
        room = engine.max_batch - running
        admitted: list[S] = []
        while waiting and room > 0:
            admitted.append(waiting.popleft())
            room -= 1
        cache = self.cache
        if admitted and cache is not None:
            seconds = 0.0
            for seq in admitted:
                prompt = seq.prompt_tokens
                cached = min(cache.lookup_and_insert(seq.hashes or ()), prompt)
                seq.hashes = None
                seq.cached_tokens = cached
                seconds += engine.prefill_time(prompt - cached, cached)
            return admitted, True, seconds
        batch = running + len(admitted)
        if not batch:
            return admitted, False, 0.0
        if engine.decode_per_context_token_s:
            context += sum(seq.prompt_tokens for seq in admitted)  # a decode instance's newcomers
        return admitted, False, engine.step_time(batch, context)
