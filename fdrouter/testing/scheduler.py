"""The mock backend's engine: continuous batching in real time, decided by the simulator's planner.

With ``MockBehavior.engine`` set, every generation request becomes an ``EngineSequence``
queued on the backend's ``EngineScheduler``. What the engine admits and how long each
iteration takes is decided by ``fdrouter.sim.batching.BatchPlanner`` (its docstring has the
rules), the planner of the simulator's instances; this module only applies the decisions in
real time: it sleeps each iteration out, then hands the tokens it produced to the waiting
handlers. The simulator applies the same decisions in simulated time, so a live run on mocks
and a simulation of it agree.

``next_step()`` and ``finish_step()`` are the clock-free half (a test drives them by hand);
the asyncio task in ``submit()`` is the clocked half.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import NamedTuple

from fdrouter.sim.batching import BatchPlanner
from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import PrefixCache

__all__ = ["DEFAULT_ENGINE", "EngineScheduler", "EngineSequence", "Step"]

DEFAULT_ENGINE = EngineModel()
"""The model when a behavior sets none; it sizes the prefix cache (EngineModel is frozen: safe to share)."""


class EngineSequence:
    """One generation request inside the engine: what the scheduler and its handler share."""

    __slots__ = (
        "completion_tokens",
        "prompt_tokens",
        "hashes",
        "cached_tokens",
        "admitted",
        "produced",
        "finished",
        "failed",
        "_waiter",
    )

    def __init__(self, completion_tokens: int, prompt_tokens: int, hashes: Sequence[int]) -> None:
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens
        self.hashes: Sequence[int] | None = hashes  # dropped once the prefix cache has seen them
        self.cached_tokens = 0
        self.admitted = False  # in the running batch, no longer waiting
        self.produced = 0
        self.finished = False
        self.failed = False
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self, produced: int) -> None:
        """Until `produced` tokens exist or the sequence is finished (a large number: until finished)."""
        while self.produced < produced and not self.finished:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def wake(self) -> None:
        """Let the handler waiting in `wait` look again."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Step(NamedTuple):
    """One iteration to run: how long it takes, and which sequences get a token at its end."""

    seconds: float
    advancing: list[EngineSequence]
    prefill: bool


class EngineScheduler:
    """Continuous batching over an EngineModel, one asyncio task per backend while there is work.

    ``on_admit`` is called with the sequences admitted into a prefill iteration, their
    ``cached_tokens`` known (the backend adds them to its counters).

    Steps are timed against a running deadline, so asyncio's late wake-ups do not add up into
    a slower engine; more than a step behind (an overloaded loop), it resets rather than burst.
    """

    def __init__(self, on_admit: Callable[[list[EngineSequence]], None]) -> None:
        self.running: list[EngineSequence] = []
        self.waiting: collections.deque[EngineSequence] = collections.deque()
        self.planner: BatchPlanner = BatchPlanner(DEFAULT_ENGINE, None)
        self._on_admit = on_admit
        self._task: asyncio.Task[None] | None = None

    def queue(self, seq: EngineSequence, engine: EngineModel, cache: PrefixCache | None) -> None:
        """Queue `seq` without starting the clock (``submit`` does both).

        The latest `engine` times the iterations from now on, and admissions look up `cache`
        (None: a PD decode instance, whose sequences arrive prefilled).
        """
        self.planner.engine = engine
        self.planner.cache = cache
        self.waiting.append(seq)

    def submit(self, seq: EngineSequence, engine: EngineModel, cache: PrefixCache | None) -> None:
        """Queue `seq` (see ``queue``) and make sure the engine runs."""
        self.queue(seq, engine, cache)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, seq: EngineSequence) -> None:
        """Take `seq` out (finished, or its client left): frees its batch slot at once."""
        if not seq.finished:
            seq.finished = True
            if seq.admitted:
                self.running.remove(seq)
            else:
                self.waiting.remove(seq)

    def cancel(self) -> None:
        """Stop the engine task (the backend is closing); every waiting handler is woken, failed."""
        if self._task is not None:
            self._task.cancel()

    def next_step(self) -> Step | None:
        """Admit what the planner admits; the next iteration, or None when there is no work."""
        planner = self.planner
        # the tokens the running batch holds, for an engine whose decode steps grow with context
        context = sum(s.prompt_tokens + s.produced for s in self.running) if planner.engine.decode_per_context_token_s else 0
        admitted, prefill, seconds = planner.plan(self.waiting, len(self.running), context)
        for seq in admitted:
            seq.admitted = True
        self.running.extend(admitted)
        if prefill:
            self._on_admit(admitted)
            return Step(seconds, admitted, True)
        if not self.running:
            return None
        return Step(seconds, list(self.running), False)

    def finish_step(self, step: Step) -> None:
        """The step's tokens exist now: count them, wake their handlers, retire finished sequences."""
        done = False
        for seq in step.advancing:
            if seq.finished:  # its client left during the step
                continue
            if seq.produced < seq.completion_tokens:
                seq.produced += 1
            if seq.produced >= seq.completion_tokens:
                seq.finished = done = True
            seq.wake()
        if done:
            self.running = [s for s in self.running if not s.finished]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        try:
            while (step := self.next_step()) is not None:
                deadline += step.seconds
                delay = deadline - loop.time()
                if delay < -step.seconds:  # more than a step behind: restart the clock rather than burst
                    deadline -= delay
                await asyncio.sleep(max(0.0, delay))  # sleep(0) still lets the handlers run
                self.finish_step(step)
        except BaseException:
            # close() cancelled us, or a bug: either way no handler may wait forever.
            for seq in [*self.running, *self.waiting]:
                seq.finished = seq.failed = True
                seq.wake()
            self.running.clear()
            self.waiting.clear()
            raise
