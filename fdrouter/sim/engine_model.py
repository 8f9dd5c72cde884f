"""A latency model of one LLM serving instance, shared by the mock backend and the simulator.

Continuous batching as in vLLM/FastDeploy: up to ``max_batch`` sequences run together;
the rest wait. A new sequence first pays prefill, which grows with the prompt tokens not
found in the prefix cache; then each decode step produces one token for every running
sequence and takes longer as the batch grows. The default numbers are a small GPU
serving a 7B model, scaled so that a whole notebook runs in seconds; they matter only
relative to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .kvcache import DEFAULT_BLOCK_TOKENS


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

    def __post_init__(self) -> None:
        for name in ("prefill_base_s", "prefill_per_token_s", "decode_base_s", "decode_per_seq_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_batch < 1 or self.block_tokens < 1 or self.cache_blocks < 0:
            raise ValueError("max_batch and block_tokens must be >= 1, cache_blocks >= 0")

    def prefill_time(self, uncached_tokens: int) -> float:
        """Seconds to prefill a prompt of which ``uncached_tokens`` were not in the cache."""
        return self.prefill_base_s + self.prefill_per_token_s * max(0, uncached_tokens)

    def step_time(self, batch: int) -> float:
        """Seconds of one decode step with ``batch`` running sequences."""
        return self.decode_base_s + self.decode_per_seq_s * max(0, batch - 1)


__all__ = ["EngineModel"]
