"""A simulated serving instance: the Candidate a policy sees, and the engine behind it.

The engine is iteration-level continuous batching, timed by ``EngineModel``; what it admits and
what each iteration costs is decided by ``fdrouter.sim.batching.BatchPlanner`` (whose docstring
has the rules), the very planner the mock backend runs. This module applies the decisions in
simulated time: a prefill iteration is one event at its end; a run of decode steps is one
event too, since the batch is constant until the next sequence finishes. The instance sleeps
until then and is woken early, at the next step boundary, only when a new request could
join the batch.

Roles: ``mixed`` does both; ``prefill`` only prefills (requests leave when their prefill
ends); ``decode`` admits requests whose KV cache arrived and only decodes: their first
token comes after their first decode step.

The Candidate attributes (``url``, ``in_flight``, ``in_flight_tokens``, ``remote``) belong to
the router's view and are written by the simulator, never by the engine here.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence

from ..policies.base import RemoteMetrics
from .batching import BatchPlanner
from .engine_model import EngineModel
from .events import Event, Kind
from .kvcache import PrefixCache

__all__ = ["DECODE", "MIXED", "PREFILL", "Job", "SimInstance"]

MIXED, PREFILL, DECODE = "mixed", "prefill", "decode"


class Job:
    """One request's journey through the cluster; the result row is read off it at the end."""

    __slots__ = (
        "rid", "arrival", "session", "prompt_tokens", "hashes", "output_tokens", "routed_tokens",
        "prefill_inst", "decode_inst", "enqueued", "cached_tokens", "queue_wait", "decode_wait",
        "first_token", "finish", "context_base",
    )

    def __init__(self, rid: int, arrival: float, session: str | None, prompt_tokens: int,
                 hashes: Sequence[int], output_tokens: int) -> None:
        self.rid = rid
        self.arrival = arrival
        self.session = session
        self.prompt_tokens = prompt_tokens
        self.hashes: Sequence[int] | None = hashes  # dropped once the prefix cache has seen them
        self.output_tokens = output_tokens
        self.routed_tokens = 0  # facts.prompt_tokens the router added to in_flight_tokens
        self.prefill_inst: SimInstance | None = None
        self.decode_inst: SimInstance | None = None
        self.enqueued = 0.0
        self.cached_tokens = 0
        self.queue_wait = 0.0
        self.decode_wait = math.nan
        self.first_token = math.nan
        self.finish = math.nan
        self.context_base = 0  # its context at decode step S is context_base + S (SimInstance._context)


class SimInstance:
    """One instance: Candidate attributes for policies plus its batching engine."""

    __slots__ = (
        "url", "role", "index", "in_flight", "in_flight_tokens", "remote", "requests_total",
        "engine", "cache", "planner", "_waiting", "_running", "_prefilling", "_first_pending", "_steps",
        "_version", "_seg_start", "_seg_step_s", "_seg_steps", "_busy", "_context",
    )

    def __init__(self, url: str, role: str, index: int, engine: EngineModel) -> None:
        self.url = url
        self.role = role
        self.index = index
        # -- what the router knows (Candidate) --
        self.in_flight = 0
        self.in_flight_tokens = 0
        self.remote: RemoteMetrics | None = None
        self.requests_total = 0
        # -- the engine --
        self.engine = engine
        self.cache = PrefixCache(engine.cache_blocks, engine.block_tokens) if role != DECODE else None
        self.planner = BatchPlanner(engine, self.cache)
        self._waiting: deque[Job] = deque()
        self._running: list[tuple[int, int, Job]] = []  # heap of (finish_step, rid, job)
        self._prefilling: list[Job] = []
        self._first_pending: list[Job] = []  # decode role: admitted, first decode step not done yet
        self._steps = 0  # decode steps run so far; sequences finish at an absolute step number
        self._version = 0  # bumped when the pending wake-up is replaced; stale ones are ignored
        self._seg_start = 0.0
        self._seg_step_s = 0.0
        self._seg_steps = 0
        self._busy = False
        # Tokens the running batch holds at decode step S: _context + len(_running) * S, each
        # sequence adding one token a step (its Job.context_base is its share of _context).
        self._context = 0

    def __repr__(self) -> str:
        return f"<SimInstance {self.url} in_flight={self.in_flight}>"

    @property
    def running(self) -> int:
        """Sequences in the batch (prefilling or decoding): FastDeploy's num_requests_running."""
        return len(self._running) + len(self._prefilling)

    @property
    def waiting(self) -> int:
        """Requests queued for a batch slot: FastDeploy's num_requests_waiting."""
        return len(self._waiting)

    def scrape(self, now: float) -> None:
        """What the router's background scraper would read from ``/metrics`` now."""
        self.remote = RemoteMetrics(running=float(self.running), waiting=float(len(self._waiting)), scraped_at=now)

    # -- the engine ----------------------------------------------------------------------

    def enqueue(self, job: Job, now: float) -> Event | None:
        """A request reaches the instance; returns a changed wake-up, if any."""
        job.enqueued = now
        self._waiting.append(job)
        if not self._busy:
            return self._plan(now)
        if self._prefilling or not self.planner.has_room(len(self._running)):
            return None  # admitted when the prefill iteration ends, or when a slot frees up
        # decoding with a free slot: stop the run at the next step boundary to admit it
        step_s = self._seg_step_s
        steps = max(0, math.ceil((now - self._seg_start) / step_s)) if step_s > 0 else 0
        if steps >= self._seg_steps:
            return None
        self._seg_steps = steps
        self._version += 1
        return Event(self._seg_start + steps * self._seg_step_s, Kind.WAKE, (self, self._version))

    def wake(self, now: float, version: int) -> tuple[list[Job], Event | None]:
        """End of an iteration: the jobs that leave this instance now, and the next wake-up."""
        if version != self._version:
            return [], None
        done: list[Job] = []
        if self._prefilling:
            for job in self._prefilling:
                if self.role == PREFILL:
                    done.append(job)
                    continue
                job.first_token = now
                if job.output_tokens <= 1:
                    job.finish = now
                    done.append(job)
                else:
                    self._start_decoding(job, 1)  # the prefill produced the first token
                    heapq.heappush(self._running, (self._steps + job.output_tokens - 1, job.rid, job))
            self._prefilling = []
        elif self._seg_steps:
            self._steps += self._seg_steps
            if self._first_pending:
                first = self._seg_start + self._seg_step_s
                for job in self._first_pending:
                    job.first_token = first
                self._first_pending = []
            running, steps = self._running, self._steps
            while running and running[0][0] <= steps:
                job = heapq.heappop(running)[2]
                self._context -= job.context_base
                job.finish = now
                done.append(job)
        return done, self._plan(now)

    def _start_decoding(self, job: Job, produced: int) -> None:
        job.context_base = job.prompt_tokens + produced - self._steps
        self._context += job.context_base

    def _plan(self, now: float) -> Event | None:
        """Admit what the planner admits and start the iteration it plans; its end is the next wake-up."""
        running = self._running
        context = self._context + len(running) * self._steps
        admitted, prefill, seconds = self.planner.plan(self._waiting, len(running), context)
        self._version += 1
        if prefill:
            for job in admitted:
                job.queue_wait = now - job.enqueued
            self._prefilling = admitted
            self._busy = True
            self._seg_steps = 0
            return Event(now + seconds, Kind.WAKE, (self, self._version))
        for job in admitted:  # a decode instance: the KV cache came computed, decoding starts now
            job.decode_wait = now - job.enqueued
            # at least one step, even for 0 tokens: a run of 0 steps would never end (and the mock
            # backend, asked for max_tokens=0, answers after one step too)
            self._start_decoding(job, 0)
            heapq.heappush(running, (self._steps + max(1, job.output_tokens), job.rid, job))
            self._first_pending.append(job)
        if running:
            self._busy = True
            steps = running[0][0] - self._steps
            growth = self.engine.decode_per_context_token_s
            if growth and steps > 1:
                # the context grows by a token per sequence per step: time the run by its mean step
                # (exact for the run's end; a run cut short ends at a mean-step boundary)
                seconds += growth * len(running) * (steps - 1) / 2
            self._seg_start = now
            self._seg_step_s = seconds
            self._seg_steps = steps
            return Event(now + steps * seconds, Kind.WAKE, (self, self._version))
        self._busy = False
        return None


__all__ = ["DECODE", "MIXED", "PREFILL", "Job", "SimInstance"]
