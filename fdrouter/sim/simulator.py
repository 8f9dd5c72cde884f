"""The event loop: requests arrive, policies route them, instances serve them.

pop, set the clock, handle, push what the handler returned (vidur's loop). The routing
step mirrors ``fdrouter.router.Router``: the routing facts carry only what the policies'
``needs`` ask for, the policy's ``choose`` gets the candidates of one role, and the chosen
instances' ``in_flight``/``in_flight_tokens`` go up at dispatch and come back down when
the request finishes (in splitwise, on both instances, when decode finishes -- as the
router releases both legs together).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..policies.base import Policy, RoutingFacts
from ..validate import estimate_tokens
from .block_requests import BlockRequest, chain_blocks
from .blocks import BlockHasher
from .engine_model import EngineModel
from .events import Event, Kind
from .instance import DECODE, MIXED, PREFILL, Job, SimInstance
from .kv_feed import KvFeed
from .kv_feed import apply as apply_kv_event
from .workloads import Request


@dataclass(frozen=True)
class ClusterConfig:
    """The simulated cluster. Times in seconds of simulated time."""

    instances: int = 8
    """Mixed instances (mixed mode)."""
    splitwise: bool = False
    """Prefill/decode disaggregation instead of mixed instances."""
    prefill: int = 4
    """Prefill instances (splitwise)."""
    decode: int = 4
    """Decode instances (splitwise)."""
    engine: EngineModel = field(default_factory=EngineModel)
    """Timing and capacity of every instance."""
    scrape_interval: float = 1.0
    """Background ``/metrics`` scrape period; the router's default is 1 s too."""
    kv_transfer_base_s: float = 0.001
    """Fixed cost of handing a KV cache from prefill to decode (connection set-up, signalling)."""
    kv_transfer_per_token_s: float = 0.000005
    """Per prompt token: a tenth of the prefill cost per token, since layer-wise transfer
    overlaps most of it with the prefill itself (as Splitwise and DistServe pipeline it)."""
    kv_event_delay: float = 0.0
    """Seconds from a change of an instance's prefix cache to the router's ``kv_events`` index."""

    def __post_init__(self) -> None:
        counts = ("prefill", "decode") if self.splitwise else ("instances",)
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.scrape_interval > 0:
            raise ValueError(f"scrape_interval must be > 0, got {self.scrape_interval}")
        if self.kv_transfer_base_s < 0 or self.kv_transfer_per_token_s < 0:
            raise ValueError("KV transfer costs must be >= 0")
        if not self.kv_event_delay >= 0:
            raise ValueError(f"kv_event_delay must be >= 0, got {self.kv_event_delay}")


class Simulator:
    """One run: build it, call ``run()`` once, read the finished jobs it returns."""

    def __init__(
        self, config: ClusterConfig, policies: dict[str, Policy], requests: Iterable[Request | BlockRequest],
        on_finish: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.policies = policies
        engine = config.engine
        if config.splitwise:
            self.candidates = {
                PREFILL: [SimInstance(f"http://prefill-{i}:8000", PREFILL, i, engine) for i in range(config.prefill)],
                DECODE: [SimInstance(f"http://decode-{i}:8000", DECODE, i, engine) for i in range(config.decode)],
            }
        else:
            self.candidates = {MIXED: [SimInstance(f"http://instance-{i}:8000", MIXED, i, engine)
                                       for i in range(config.instances)]}
        self.instances: list[SimInstance] = [inst for group in self.candidates.values() for inst in group]
        needs = frozenset().union(*(p.needs for p in policies.values()))
        self._needs_text = bool(needs & {"prompt_tokens", "prompt_text"})  # the router parses both or neither
        self._needs_session = "session_key" in needs
        self._needs_blocks = "prompt_blocks" in needs
        # a block request's text is built only for a policy that cannot read its blocks
        self._text_only = any("prompt_text" in p.needs and "prompt_blocks" not in p.needs for p in policies.values())
        self._kv_keys = "kv_events" in needs
        self._hasher = BlockHasher(engine.block_tokens)
        self._requests = iter(requests)
        self._on_finish = on_finish
        self._queue: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.now = 0.0
        self._open = 0  # dispatched, not finished
        self._arrivals_left = True
        self._next_arrival_at = 0.0
        self._finished: list[Job] = []
        self._handlers: dict[int, Callable[[Any], list[Event] | None]] = {
            Kind.WAKE: self._on_wake,
            Kind.KV_READY: self._on_kv_ready,
            Kind.SCRAPE: self._on_scrape,
            Kind.ARRIVAL: self._on_arrival,
            Kind.KV_EVENT: apply_kv_event,
        }
        for role, policy in policies.items():  # a kv_events policy's index hears of its instances' caches
            index = getattr(policy, "kv_index", None)
            if "kv_events" in policy.needs and index is not None:
                for inst in self.candidates.get(role, ()):
                    if inst.cache is not None:
                        inst.cache.listener = KvFeed(inst.url, index, config.kv_event_delay,
                                                     clock=lambda: self.now, push=self._push)

    @property
    def finished(self) -> int:
        """Requests finished so far."""
        return len(self._finished)

    # -- the loop ------------------------------------------------------------------------

    def _push(self, events: Iterable[Event]) -> None:
        for ev in events:
            self._seq += 1
            heapq.heappush(self._queue, (ev.time, ev.kind, self._seq, ev.payload))

    def run(self) -> list[Job]:
        """Simulate until every request has finished; the finished jobs, in finishing order."""
        self._push(self._next_arrival())
        self._push([Event(0.0, Kind.SCRAPE)])
        queue, handlers, pop = self._queue, self._handlers, heapq.heappop
        while queue:
            time, kind, _, payload = pop(queue)
            self.now = time
            follow = handlers[kind](payload)
            if follow:
                self._push(follow)
        return self._finished

    # -- handlers: each returns its follow-up events ---------------------------------------

    def _next_arrival(self) -> list[Event]:
        request = next(self._requests, None)
        if request is None:
            self._arrivals_left = False
            return []
        if request.arrival < self.now:
            raise ValueError(
                f"requests must come in arrival order: request {request.id} arrives at {request.arrival} "
                f"after one at {self.now}"
            )
        self._next_arrival_at = request.arrival
        return [Event(request.arrival, Kind.ARRIVAL, request)]

    def _on_arrival(self, request: Request | BlockRequest) -> list[Event]:
        if isinstance(request, BlockRequest):
            if request.block_tokens != self._hasher.block_tokens:
                raise ValueError(
                    f"request {request.id} has {request.block_tokens}-token blocks but the engine's cache "
                    f"{self._hasher.block_tokens}: use engine.with_cache(block_tokens=...)"
                )
            tokens = request.prompt_tokens
            blocks = chain_blocks(request.blocks)
            job = Job(request.id, request.arrival, request.session, tokens, blocks, request.output_tokens)
            facts = RoutingFacts(
                prompt_tokens=tokens if self._needs_text else 0,
                prompt_text=request.prompt if self._text_only else None,
                prompt_blocks=blocks if self._needs_blocks else None,
                session_key=request.session if self._needs_session else None,
                now=self.now,
            )
        else:
            prompt = request.prompt
            tokens = estimate_tokens(prompt)
            job = Job(request.id, request.arrival, request.session, tokens,
                      self._hasher.hashes(prompt, request.prefix), request.output_tokens)
            facts = RoutingFacts(
                prompt_tokens=tokens if self._needs_text else 0,
                prompt_text=prompt if self._needs_text else None,
                # kv_events matches the keys its index learns from the simulated caches' events
                prompt_blocks=tuple(job.hashes) if self._kv_keys and job.hashes is not None else None,
                session_key=request.session if self._needs_session else None,
                now=self.now,
            )
        job.routed_tokens = facts.prompt_tokens
        follow = self._next_arrival()
        if self.config.splitwise:
            # both chosen at arrival, prefill first, as Router._generate_pd does
            prefill = self._choose(PREFILL, facts)
            decode = self._choose(DECODE, facts)
            _acquire(prefill, job)
            _acquire(decode, job)
            job.prefill_inst, job.decode_inst = prefill, decode
            target = prefill
        else:
            target = self._choose(MIXED, facts)
            _acquire(target, job)
            job.prefill_inst = job.decode_inst = target
        self._open += 1
        ev = target.enqueue(job, self.now)
        if ev is not None:
            follow.append(ev)
        return follow

    def _choose(self, role: str, facts: RoutingFacts) -> SimInstance:
        candidates = self.candidates[role]
        choice = self.policies[role].choose(candidates, facts)
        if choice.__class__ is not SimInstance or choice.role != role or choice not in candidates:
            raise TypeError(f"policy {self.policies[role].name!r} returned {choice!r}, not one of its candidates")
        return choice

    def _on_wake(self, payload: tuple[SimInstance, int]) -> list[Event]:
        inst, version = payload
        done, ev = inst.wake(self.now, version)
        follow = [] if ev is None else [ev]
        if inst.role == PREFILL:
            cfg = self.config
            for job in done:
                delay = cfg.kv_transfer_base_s + cfg.kv_transfer_per_token_s * job.prompt_tokens
                follow.append(Event(self.now + delay, Kind.KV_READY, job))
        else:
            for job in done:
                self._finish(job)
        return follow

    def _on_kv_ready(self, job: Job) -> list[Event]:
        assert job.decode_inst is not None  # chosen at arrival
        ev = job.decode_inst.enqueue(job, self.now)
        return [] if ev is None else [ev]

    def _on_scrape(self, _: object) -> list[Event]:
        now = self.now
        for inst in self.instances:
            inst.scrape(now)
        interval = self.config.scrape_interval
        if self._open:
            return [Event(now + interval, Kind.SCRAPE)]
        if self._arrivals_left:
            # an empty cluster reads 0 running, 0 waiting at every tick: skip to the last tick
            # before the next arrival, so a trace with long quiet gaps costs no idle events
            ticks = max(1, math.floor((self._next_arrival_at - now) / interval))
            return [Event(now + ticks * interval, Kind.SCRAPE)]
        return []

    def _finish(self, job: Job) -> None:
        assert job.prefill_inst is not None and job.decode_inst is not None  # chosen at arrival
        _release(job.prefill_inst, job)
        if job.decode_inst is not job.prefill_inst:
            _release(job.decode_inst, job)
        self._open -= 1
        self._finished.append(job)
        if self._on_finish is not None:
            self._on_finish(len(self._finished))


def _acquire(inst: SimInstance, job: Job) -> None:
    inst.in_flight += 1
    inst.in_flight_tokens += job.routed_tokens
    inst.requests_total += 1


def _release(inst: SimInstance, job: Job) -> None:
    inst.in_flight -= 1
    inst.in_flight_tokens -= job.routed_tokens


__all__ = ["ClusterConfig", "Simulator"]
