"""``swiglu``: the SwiGLU activation, native where paddle has it.

SwiGLU is ``silu(a) * b`` (Shazeer 2020, "GLU Variants Improve Transformer",
arXiv:2002.05202, with Swish_1 = SiLU). ``paddle.nn.functional.swiglu`` defines the
one-input form by splitting the last axis in two halves,
``silu(xs[0]) * xs[1]`` with ``xs = paddle.chunk(x, 2, axis=-1)`` (its docstring); the
fallback composes exactly that from ``F.silu`` and ``paddle.chunk``, so autograd gives the
same gradients as the fused kernel. The shim can go when the Iluvatar (and any other
platform) paddle build ships ``paddle.nn.functional.swiglu``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from compat import probe


@probe.public
def swiglu(x: Any, y: Any = None) -> Any:
    """SwiGLU: ``silu(a) * b``, where ``(a, b)`` are the two halves of ``x`` along the last
    axis, or ``x`` and ``y`` when ``y`` is given.

    Calls ``paddle.nn.functional.swiglu`` where it exists, else the composed fallback
    (same values and gradients). Raises PaddleMissing if paddle is not installed.
    """
    return probe.resolve("swiglu")(x, y)


def swiglu_fallback(x: Any, y: Any = None) -> Any:
    """The composed SwiGLU used where paddle has no ``F.swiglu``; public so tests can pin it."""
    import paddle

    if y is None:
        a, b = paddle.chunk(x, 2, axis=-1)
    else:
        a, b = x, y
    return paddle.nn.functional.silu(a) * b


@probe.register("swiglu")
def _probe(paddle: ModuleType, shared: dict[str, Any]) -> probe.Decision:
    native = getattr(paddle.nn.functional, "swiglu", None)
    if native is not None:
        return probe.native("swiglu", "paddle.nn.functional.swiglu", native)
    reason = "paddle.nn.functional.swiglu is missing; using silu(a) * b with paddle.chunk halves"
    return probe.fallback("swiglu", reason, swiglu_fallback)


__all__ = ["swiglu", "swiglu_fallback"]
