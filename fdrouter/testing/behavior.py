"""How a mock backend answers: the knobs a test turns, including the faults it injects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.engine_profiles import engine_profile

__all__ = ["MockBehavior"]


@dataclass
class MockBehavior:
    """How a MockBackend answers. Mutable: tests flip fields while the server runs.

    Generation requests read the fields when they arrive, so a change applies to the next request.
    """

    output_tokens: int = 8
    """Tokens generated per request; the client's max_tokens caps it if smaller."""
    token_delay: float = 0.0
    """Seconds per generated token: between stream chunks, or n * delay before a non-streaming answer.

    Ignored while `engine` is set."""
    engine: EngineModel | None = None
    """A latency model: continuous batching timed by this EngineModel (see `MockBackend`), and the
    prefix cache sized by it. None: no batch limit, `token_delay` pacing, a default-sized cache.
    A profile name (``fdrouter.sim.engine_profiles``, e.g. ``MockBehavior(engine="llama3-8b-a100")``)
    is turned into its EngineModel when assigned; an unknown name is a ValueError."""
    fail_status: int | None = None
    """Generation endpoints answer this status with an OpenAI error body."""
    reset_after_chunks: int | None = None
    """Streaming: abort the TCP connection after this many data chunks, before [DONE]."""
    stall_after_chunks: int | None = None
    """Streaming: after this many data chunks (0: right after the headers) go silent, before [DONE],
    until the client disconnects or the server closes."""
    hang_before_headers: bool = False
    """Generation requests never answer; they wait until the client disconnects or the server closes."""
    health_status: int = 200
    """Status of GET /health."""
    health_delay: float = 0.0
    """Seconds GET /health waits before answering: a slow or hung health endpoint."""
    gate: asyncio.Event | None = None
    """Generation requests that arrive while this is an unset Event wait for ``gate.set()`` (after
    reading their body, counted in flight) before answering as the other fields say. Lets a test
    decide when answers come instead of timing them: ``behavior.gate = asyncio.Event()``, send,
    check what is in flight, then ``gate.set()``. None (the default): no wait."""
    preempt_after_tokens: int | Callable[[dict[str, Any]], int | None] | None = None
    """A decode (or mixed) instance under memory pressure, as FastDeploy's preempts a request: after
    this many tokens of an attempt it stops with ``finish_reason: "pd_reschedule"`` and the partial
    output (and its token ids, if ``return_token_ids``); a stream's last event carries the reason.
    A callable gets each request's body and returns the count, or None for no preemption (per
    request; seed a ``random.Random`` in it for a probability). A request carrying
    ``completion_token_ids`` goes on after them, so the attempts' outputs add up to the whole answer.
    None (the default), or a count that reaches the end: never preempted."""

    def preemption_point(self, body: dict[str, Any]) -> int | None:
        """Tokens this request may generate in this attempt before it is preempted, or None."""
        after = self.preempt_after_tokens
        if callable(after):
            after = after(body)
        return None if after is None else max(0, int(after))

    def __setattr__(self, name: str, value: Any) -> None:
        # a profile name becomes its model at assignment (in __init__ too), so readers always see a model
        if name == "engine" and isinstance(value, str):
            value = engine_profile(value)
        object.__setattr__(self, name, value)
