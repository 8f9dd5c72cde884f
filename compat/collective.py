"""Collectives of tensor-parallel inference: the all-reduce, and decode's alltoall-transpose.

tensor_model_parallel_all_reduce
    native: the eager all-reduce registered as a custom python op with
    ``paddle.static.register_op``. A static graph (``paddle.jit.to_static``, FastDeploy's
    graph capture) then holds it as one op whose body runs eagerly; in dynamic mode it is a
    plain call. Registration is the step that fails on the HPU and Iluvatar builds.
    fallback: the same eager all-reduce, called directly. Identical in dynamic mode; a
    static graph traces into it instead of holding one op.
    Which group, as in FastDeploy's ``fastdeploy/distributed/communication.py``: the given
    one, else (dynamic mode) the model-parallel group of an initialised fleet, else the
    global group. An input with first dimension 0, or a group of one rank, comes back as is.
    The shim can go when every platform build can register custom python ops.

decode_alltoall_transpose
    Decision: unavailable on every platform compat knows. FastDeploy's op is a CUDA kernel
    of its custom all-reduce (``fastdeploy/distributed/custom_all_reduce``, IPC-shared GPU
    buffers); paddle has no CPU, HPU or Iluvatar kernel for it, and its exact output layout
    is defined only by that kernel, so a python "reference" here would be a guess. It stays
    defined so model modules import everywhere; calling it raises OpUnavailable (a
    RuntimeError) naming the op, the platform and how custom op registration went.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from compat import probe

ALL_REDUCE = "tensor_model_parallel_all_reduce"
ALLTOALL_TRANSPOSE = "decode_alltoall_transpose"


@probe.public
def tensor_model_parallel_all_reduce(x: Any, group: Any = None) -> Any:
    """Sum ``x`` in place across the ranks of ``group`` and return it.

    ``group`` defaults to the model-parallel group of an initialised fleet, else the global
    group. Returns ``x`` unchanged when ``x.shape[0] == 0`` or the group has one rank. Uses
    the registered custom op where registration works, else a direct
    ``paddle.distributed.all_reduce``. Raises PaddleMissing if paddle is not installed.
    """
    return probe.resolve(ALL_REDUCE)(x, group)


@probe.public
def decode_alltoall_transpose(x: Any, out: Any = None) -> Any:
    """FastDeploy's decode-time alltoall + transpose; no platform compat knows has a kernel.

    Always raises: OpUnavailable (a RuntimeError) naming the op, the platform and the
    custom op registration error if any, or PaddleMissing if paddle is not installed.
    Defined anyway so that modules referring to it import on every platform.
    """
    return probe.resolve(ALLTOALL_TRANSPOSE)(x, out)


def all_reduce_eager(x: Any, group: Any = None) -> Any:
    """The all-reduce itself: the registered op's body, and the fallback when registration fails."""
    import paddle
    import paddle.distributed as dist

    if x.shape[0] == 0:
        return x
    if group is None and paddle.in_dynamic_mode():
        group = _model_parallel_group()
    world_size = group.nranks if group is not None else dist.get_world_size()
    if world_size == 1:
        return x
    dist.all_reduce(x, group=group)
    return x


def _model_parallel_group() -> Any:
    from paddle.distributed import fleet

    try:
        hcg = fleet.get_hybrid_communicate_group()
    # before fleet.init() the Fleet has no _hcg (AttributeError) or a None one (assert)
    except (AttributeError, AssertionError):
        return None
    return hcg.get_model_parallel_group() if hcg is not None else None


def _infer_meta(x: Any, group: Any = None) -> Any:
    import paddle

    return paddle.static.MetaTensor(shape=x.shape, dtype=x.dtype)


def _registration(paddle: ModuleType, shared: dict[str, Any]) -> tuple[Any, BaseException | None]:
    """Register the all-reduce as a custom python op, once per probe round: (op, None) or (None, error)."""
    if "custom_op_registration" not in shared:
        try:
            register_op = paddle.static.register_op
            op = register_op(
                name=ALL_REDUCE,
                infer_meta=_infer_meta,
                input_names=["x"],
                output_names=["out"],
                inplace_map={},
            )(all_reduce_eager)
        # builds fail here in different ways (missing API, missing kernel, bad signature);
        # any failure means "no custom op", and the probe reports which one it was
        except Exception as exc:
            shared["custom_op_registration"] = (None, exc)
        else:
            shared["custom_op_registration"] = (op, None)
    return shared["custom_op_registration"]


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "custom op registration works (paddle.static.register_op)"
    return f"custom op registration failed: {type(error).__name__}: {error}"


@probe.register(ALL_REDUCE)
def _probe_all_reduce(paddle: ModuleType, shared: dict[str, Any]) -> probe.Decision:
    op, error = _registration(paddle, shared)
    if op is not None:
        return probe.native(ALL_REDUCE, "registered as a custom python op (paddle.static.register_op)", op)
    reason = f"{_describe(error)}; calling paddle.distributed.all_reduce directly"
    return probe.fallback(ALL_REDUCE, reason, all_reduce_eager)


@probe.register(ALLTOALL_TRANSPOSE)
def _probe_alltoall_transpose(paddle: ModuleType, shared: dict[str, Any]) -> probe.Decision:
    _, error = _registration(paddle, shared)
    reason = (
        "no kernel for this device (FastDeploy's is a CUDA kernel of its custom all-reduce); "
        f"{_describe(error)}"
    )
    return probe.unavailable(ALLTOALL_TRANSPOSE, reason)


__all__ = [
    "ALLTOALL_TRANSPOSE",
    "ALL_REDUCE",
    "all_reduce_eager",
    "decode_alltoall_transpose",
    "tensor_model_parallel_all_reduce",
]
