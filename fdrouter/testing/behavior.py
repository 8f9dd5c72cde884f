"""How a mock backend answers: the knobs a test turns, including the faults it injects."""

from __future__ import annotations

import asyncio
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

    def __setattr__(self, name: str, value: Any) -> None:
        # a profile name becomes its model at assignment (in __init__ too), so readers always see a model
        if name == "engine" and isinstance(value, str):
            value = engine_profile(value)
        object.__setattr__(self, name, value)
