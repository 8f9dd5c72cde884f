"""A latency model of one LLM serving instance, shared by the mock backend and the simulator.

Continuous batching as in vLLM/FastDeploy: up to ``max_batch`` sequences run together;
the rest wait. A new sequence first pays prefill, which grows with the prompt tokens not
found in the prefix cache; then each decode step produces one token for every running
sequence and takes longer as the batch (and the context it reads) grows.

The cost terms, all in seconds:

- prefill of ``u`` uncached tokens after ``p`` cached ones:
  ``prefill_base_s + prefill_per_token_s * u + prefill_per_token_sq_s * ((p + u)**2 - p**2)``.
  The square term is attention (every new token attends to every token before it), so with
  it a prefill costs the difference of the full prompt's cost and the cached prefix's, as the
  Mooncake paper (FAST'25, Table 1) writes prefill FLOPs: ``l * (a*n**2*d + b*n*d**2)``.
- one decode step of ``batch`` sequences holding ``context`` tokens in all:
  ``decode_base_s + decode_per_seq_s * (batch - 1) + decode_per_context_token_s * context``
  (reading the weights once, a little compute per sequence, reading every sequence's KV cache).

The defaults (the "toy" profile) are a small GPU serving a 7B model, scaled so that a whole
notebook runs in seconds, with both context terms off; they matter only relative to each
other. ``fdrouter.sim.engine_profiles`` derives models of real hardware from published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .kvcache import DEFAULT_BLOCK_TOKENS

__all__ = ["EngineModel"]

_TIMES = ("prefill_base_s", "prefill_per_token_s", "prefill_per_token_sq_s", "decode_base_s",
          "decode_per_seq_s", "decode_per_context_token_s")


@dataclass(frozen=True)
class EngineModel:
    """Timing and capacity of one instance. All times in seconds."""

    prefill_base_s: float = 0.002
    """Fixed cost of a prefill (scheduling, the first forward pass)."""
    prefill_per_token_s: float = 0.00005
    """Cost per *uncached* prompt token (20k tokens/s)."""
    decode_base_s: float = 0.004
    """Time of one decode step with a batch of one."""
    decode_per_seq_s: float = 0.0001
    """Extra step time per additional running sequence."""
    max_batch: int = 32
    """Sequences decoded together; more wait in a queue."""
    cache_blocks: int = 2048
    """Prefix-cache capacity in blocks."""
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    """Tokens per cache block."""
    prefill_per_token_sq_s: float = 0.0
    """Attention: prefilling ``u`` tokens after ``p`` cached ones adds this times ``(p+u)**2 - p**2``."""
    decode_per_context_token_s: float = 0.0
    """Added to a decode step per token of context held by the batch (reading the KV cache)."""
    name: str | None = field(default=None, compare=False)
    """The profile's name (``engine_profiles``); None for a hand-made model."""

    def __post_init__(self) -> None:
        for name in _TIMES:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_batch < 1 or self.block_tokens < 1 or self.cache_blocks < 0:
            raise ValueError("max_batch and block_tokens must be >= 1, cache_blocks >= 0")

    @property
    def cache_tokens(self) -> int:
        """Prefix-cache capacity in tokens."""
        return self.cache_blocks * self.block_tokens

    def prefill_time(self, uncached_tokens: int, cached_tokens: int = 0) -> float:
        """Seconds to prefill ``uncached_tokens`` new prompt tokens after ``cached_tokens`` found in the cache."""
        u = max(0, uncached_tokens)
        seconds = self.prefill_base_s + self.prefill_per_token_s * u
        if self.prefill_per_token_sq_s:
            seconds += self.prefill_per_token_sq_s * (u * (2 * max(0, cached_tokens) + u))  # (p+u)^2 - p^2
        return seconds

    def step_time(self, batch: int, context_tokens: int = 0) -> float:
        """Seconds of one decode step with ``batch`` running sequences holding ``context_tokens`` in all."""
        seconds = self.decode_base_s + self.decode_per_seq_s * max(0, batch - 1)
        if self.decode_per_context_token_s:
            seconds += self.decode_per_context_token_s * max(0, context_tokens)
        return seconds

    def decode_run_time(self, batch: int, context_tokens: int, steps: int) -> float:
        """Seconds of ``steps`` decode steps of a constant batch, its context growing by ``batch`` a step.

        Exact for the linear ``step_time``: the first step sees ``context_tokens``, the last
        ``context_tokens + batch * (steps - 1)``.
        """
        if steps <= 0:
            return 0.0
        growth = self.decode_per_context_token_s * batch * (steps * (steps - 1) / 2)
        return steps * self.step_time(batch, context_tokens) + growth

    def with_cache(self, *, cache_tokens: int | None = None, block_tokens: int | None = None) -> EngineModel:
        """This model with another cache block size and/or capacity; the capacity in tokens is kept
        unless ``cache_tokens`` is given (it is rounded down to whole blocks)."""
        block = self.block_tokens if block_tokens is None else block_tokens
        tokens = self.cache_tokens if cache_tokens is None else cache_tokens
        if block < 1 or tokens < 0:
            raise ValueError(f"block_tokens must be >= 1 and cache_tokens >= 0, got {block} and {tokens}")
        return replace(self, block_tokens=block, cache_blocks=tokens // block)

    def scaled(self, time_factor: float) -> EngineModel:
        """Every duration multiplied by ``time_factor`` (0.1: ten times faster); capacity unchanged.

        For a live run on mock backends compressed in time: replay a trace ``1 / time_factor``
        times faster against mocks running ``engine.scaled(time_factor)`` and every latency
        scales by ``time_factor``, queueing included.
        """
        if not time_factor > 0:
            raise ValueError(f"time_factor must be > 0, got {time_factor}")
        times = {name: getattr(self, name) * time_factor for name in _TIMES}
        # the quadratic term's unit is s/token^2: it scales like the others
        name = None if self.name is None else f"{self.name}*{time_factor:g}"
        return replace(self, **times, name=name)

    def describe(self) -> dict[str, object]:
        """The model's fields as a plain dict (for tables and JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
