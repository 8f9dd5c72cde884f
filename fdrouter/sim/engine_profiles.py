"""Named engine profiles: ``EngineModel`` numbers derived from a model, its GPUs and published figures.

``engine_profile(name)`` builds one; ``available_engines()`` lists them. ``toy`` (the default
everywhere) is ``EngineModel()``: fast and linear, for notebooks and tests. The others are
derived the same way, each from a ``Transformer`` and an ``Accelerator`` (sources in their
docstrings):

- prefill FLOPs of an ``n``-token prompt ``F(n) = l * (a*n**2*d + b*n*d**2)`` (the Mooncake
  paper's form, FAST'25 Table 1), run at ``mfu`` of the GPUs' peak: ``prefill_per_token_s =
  l*b*d**2 / G`` and ``prefill_per_token_sq_s = l*a*d / G``, so a prompt with ``p`` cached
  tokens costs ``F(p + u) - F(p)``;
- a decode step reads every weight once and every running sequence's KV cache, at
  ``bandwidth_efficiency`` of the HBM bandwidth: ``decode_base_s = weight bytes / BW``,
  ``decode_per_context_token_s = KV bytes per token / BW`` (decoding is memory-bound);
- KV bytes per token ``= 2 (K and V) * layers * kv_heads * head_dim * dtype bytes``; the KV
  capacity is the GPUs' memory times ``memory_utilization`` (vLLM's ``gpu_memory_utilization``
  default, 0.9) minus the weights, over that; the prefix cache gets all of it;
- ``max_batch``: as many 8192-token contexts as the KV capacity holds, at most 256 (vLLM's
  default ``max_num_seqs``): the planner limits sequences, not KV memory;
- ``prefill_base_s``: one pass over the weights (a prefill of a few tokens is a decode step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .engine_model import EngineModel
from .kvcache import DEFAULT_BLOCK_TOKENS

__all__ = [
    "DEFAULT_ENGINE_PROFILE", "ENGINE_PROFILES", "Accelerator", "Transformer", "available_engines",
    "derive_engine", "engine_profile", "llama3_70b_8xa800", "llama3_8b_a100", "toy",
]

DEFAULT_ENGINE_PROFILE = "toy"
BATCH_CONTEXT_TOKENS = 8192
"""Context per sequence assumed when sizing ``max_batch`` from the KV capacity."""
MAX_NUM_SEQS = 256
"""vLLM's default ``max_num_seqs`` (``SchedulerConfig``): the batch never exceeds it."""


@dataclass(frozen=True)
class Transformer:
    """What the cost model needs of a dense decoder-only model."""

    layers: int
    """``l``: transformer layers."""
    hidden: int
    """``d``: model (embedding) dimension."""
    kv_heads: int
    """Key/value heads (GQA)."""
    head_dim: int
    """Dimension of one attention head."""
    params: float
    """Parameters, for the weight bytes a decode step reads."""
    attention_coeff: float = 4.0
    """``a``: attention FLOPs per layer are ``a * n**2 * d`` (QK^T and AV, 2 FLOPs per MAC)."""
    linear_coeff: float = 22.0
    """``b``: projection and MLP FLOPs per layer are ``b * n * d**2``."""
    dtype_bytes: int = 2
    """Bytes per weight and KV element (BF16/FP16)."""

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes per token: K and V, every layer, every KV head."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def weight_bytes(self) -> float:
        """Bytes of the weights."""
        return self.params * self.dtype_bytes


@dataclass(frozen=True)
class Accelerator:
    """The GPUs one instance runs on (tensor parallel over ``count`` devices)."""

    count: int
    peak_flops: float
    """Dense BF16 FLOP/s of one device."""
    memory_bytes: float
    """HBM of one device."""
    bandwidth: float
    """HBM bytes/s of one device."""


def derive_engine(
    name: str, model: Transformer, gpus: Accelerator, *, mfu: float, bandwidth_efficiency: float,
    decode_per_seq_s: float, memory_utilization: float = 0.9, block_tokens: int = DEFAULT_BLOCK_TOKENS,
) -> EngineModel:
    """The ``EngineModel`` of ``model`` on ``gpus`` (the rules are in the module docstring)."""
    flops = gpus.count * gpus.peak_flops * mfu
    bandwidth = gpus.count * gpus.bandwidth * bandwidth_efficiency
    kv_bytes = gpus.count * gpus.memory_bytes * memory_utilization - model.weight_bytes
    if kv_bytes <= 0:
        raise ValueError(f"{name}: the weights do not fit in the GPUs' memory")
    kv_tokens = int(kv_bytes // model.kv_bytes_per_token)
    layers, d = model.layers, model.hidden
    weights_pass = model.weight_bytes / bandwidth
    return EngineModel(
        prefill_base_s=weights_pass,
        prefill_per_token_s=layers * model.linear_coeff * d * d / flops,
        prefill_per_token_sq_s=layers * model.attention_coeff * d / flops,
        decode_base_s=weights_pass,
        decode_per_seq_s=decode_per_seq_s,
        decode_per_context_token_s=model.kv_bytes_per_token / bandwidth,
        max_batch=max(1, min(MAX_NUM_SEQS, kv_tokens // BATCH_CONTEXT_TOKENS)),
        cache_blocks=kv_tokens // block_tokens,
        block_tokens=block_tokens,
        name=name,
    )


def toy() -> EngineModel:
    """The default: ``EngineModel()``, a small GPU serving a 7B model, linear and fast (20k prefill
    tokens/s, 4 ms decode steps, a 32k-token cache); for notebooks and tests, not for absolute numbers."""
    return EngineModel(name="toy")


# NVIDIA A100/A800 80GB SXM: 312 TFLOPS dense BF16, 2,039 GB/s HBM2e (NVIDIA A100 datasheet; the
# A800 is the A100 with NVLink cut to 400 GB/s, same compute and memory).
_A100_FLOPS, _A100_MEMORY, _A100_BANDWIDTH = 312e12, 80e9, 2.039e12
# Measured on an A100 by vidur (microsoft/vidur, data/profiling/compute/a100/meta-llama/
# Meta-Llama-3-8B/mlp.csv, tensor parallel 1): a batch-1 decode step's linear layers take
# 0.304 ms per layer for 436 MB of weights, 1.44 TB/s = 0.70 of the peak bandwidth; with 64
# sequences 0.353 ms, i.e. 0.0248 ms more per extra sequence for the 32 layers.
_MEASURED_BANDWIDTH_EFFICIENCY = 0.70
_LLAMA3_8B_PER_SEQ_S = 0.0248e-3


def llama3_70b_8xa800() -> EngineModel:
    """LLaMA3-70B on 8 x A800 80GB with tensor parallelism: the Mooncake paper's setting.

    Source: Qin et al., "Mooncake: Trading More Storage for Less Computation", FAST'25, Table 1:
    l = 80 layers, d = 8192, a = 4, b = 22, gqa = 8 (so 8 KV heads of dimension 128), BF16
    (s = 2 bytes), G = 8 x 312 TFLOPS. MFU 0.5 is ours (stated, not the paper's): vidur's A100
    profile of Llama-3-8B runs its linear layers at 0.68 MFU with 32k tokens, and tensor-parallel
    all-reduces over 8 GPUs cost some of that. Parameters: 70.6e9 (Meta's model card).

    Derived: prefill 9.5e-5 s per uncached token plus 2.1e-9 s per token^2 (a 15k-token prompt
    ~1.9 s); KV 327,680 bytes (320 KiB) per token = 2 x 80 x 8 x 128 x 2, as the paper's
    ``n * l * (2d/gqa) * s``; KV capacity (8 x 80 GB x 0.9 - 141 GB weights) / 320 KiB = 1.33M
    tokens; a decode step ~12.4 ms (141 GB of weights at 0.70 of 8 x 2,039 GB/s) plus 2.9e-8 s
    per context token; 0.027 ms per extra sequence (vidur's Llama-3-8B figure, scaled by the
    8.8B parameters each GPU holds).
    """
    model = Transformer(layers=80, hidden=8192, kv_heads=8, head_dim=128, params=70.6e9,
                        attention_coeff=4.0, linear_coeff=22.0)
    gpus = Accelerator(count=8, peak_flops=_A100_FLOPS, memory_bytes=_A100_MEMORY, bandwidth=_A100_BANDWIDTH)
    return derive_engine("llama3-70b-8xa800", model, gpus, mfu=0.5,
                         bandwidth_efficiency=_MEASURED_BANDWIDTH_EFFICIENCY,
                         decode_per_seq_s=_LLAMA3_8B_PER_SEQ_S * (70.6 / 8) / 8.03)


def llama3_8b_a100() -> EngineModel:
    """Llama-3-8B on one A100 80GB SXM, from vidur's published model config and A100 profile.

    Sources: microsoft/vidur (Agrawal et al., "Vidur: A Large-Scale Simulation Framework for LLM
    Inference", MLSys'24): ``data/model_configs/meta-llama/Meta-Llama-3-8B.yml`` (32 layers,
    d = 4096, 32 query and 8 KV heads of 128, MLP 14336, gated) and
    ``data/profiling/compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv`` (measured): the linear
    layers of a 32,768-token batch take 67.4 ms per layer for 436M FLOPs per token, 212 TFLOPS
    = MFU 0.68; a batch-1 decode step reads the weights at 0.70 of the peak bandwidth. b = 26 is
    the FLOPs per token per layer over d^2: 2 x (QKV 1.5 + O 1 + gate/up 7 + down 3.5). a = 4
    as in Mooncake's form. Parameters 8.03e9 (Meta's model card); A100: 312 TFLOPS, 80 GB,
    2,039 GB/s (NVIDIA's datasheet).

    Derived: prefill 6.6e-5 s per uncached token plus 2.5e-9 s per token^2 (a 15k-token prompt
    ~1.6 s); KV 131,072 bytes
    (128 KiB) per token = 2 x 32 x 8 x 128 x 2; KV capacity (80 GB x 0.9 - 16 GB) / 128 KiB =
    427k tokens; a decode step ~11 ms plus 9.2e-8 s per context token and 0.025 ms per extra
    sequence.
    """
    model = Transformer(layers=32, hidden=4096, kv_heads=8, head_dim=128, params=8.03e9,
                        attention_coeff=4.0, linear_coeff=26.0)
    gpus = Accelerator(count=1, peak_flops=_A100_FLOPS, memory_bytes=_A100_MEMORY, bandwidth=_A100_BANDWIDTH)
    return derive_engine("llama3-8b-a100", model, gpus, mfu=0.68,
                         bandwidth_efficiency=_MEASURED_BANDWIDTH_EFFICIENCY, decode_per_seq_s=_LLAMA3_8B_PER_SEQ_S)


ENGINE_PROFILES: dict[str, Callable[[], EngineModel]] = {
    "toy": toy,
    "llama3-70b-8xa800": llama3_70b_8xa800,
    "llama3-8b-a100": llama3_8b_a100,
}


def available_engines() -> list[str]:
    """Profile names, the default first."""
    return [DEFAULT_ENGINE_PROFILE] + sorted(n for n in ENGINE_PROFILES if n != DEFAULT_ENGINE_PROFILE)


def engine_profile(name: str) -> EngineModel:
    """The ``EngineModel`` of a named profile; ``ValueError`` naming the choices for an unknown one."""
    try:
        factory = ENGINE_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(available_engines())}") from None
    return factory()
