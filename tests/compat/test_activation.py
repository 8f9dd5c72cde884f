"""compat.swiglu: the composed fallback must match paddle's fused kernel, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import compat
from compat import profiles

SHAPES = [(4, 8), (3, 5, 16), (2, 3, 2, 6), (1, 2)]
# float32: the fused kernel and silu(a) * b differ by a few ulps (max seen here ~3e-8)
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-12}}


@pytest.fixture
def native_swiglu(paddle):
    """paddle's own F.swiglu, fetched with nothing masked (the iluvatar profile hides it)."""
    with profiles.using("cpu"):
        return paddle.nn.functional.swiglu


def _tensors(paddle, shape, dtype, seed, count):
    rng = np.random.default_rng(seed)
    tensors = [paddle.to_tensor(rng.standard_normal(shape) * 3, dtype=dtype) for _ in range(count)]
    for t in tensors:
        t.stop_gradient = False
    return tensors


def _forward_backward(fn, tensors, grad_out):
    out = fn(*tensors)
    out.backward(grad_out)
    grads = [t.grad.numpy().copy() for t in tensors]
    for t in tensors:
        t.clear_gradient()
    return out.numpy(), grads


def _assert_matches(paddle, fn, reference, shape, dtype, seed, count):
    tensors = _tensors(paddle, shape, dtype, seed, count)
    out_shape = shape if count == 2 else (*shape[:-1], shape[-1] // 2)
    grad_out = paddle.to_tensor(np.random.default_rng(seed + 100).standard_normal(out_shape), dtype=dtype)
    out, grads = _forward_backward(fn, tensors, grad_out)
    ref_out, ref_grads = _forward_backward(reference, tensors, grad_out)
    assert out.dtype == ref_out.dtype and out.shape == ref_out.shape
    np.testing.assert_allclose(out, ref_out, **TOLERANCE[dtype])
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(grad, ref_grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_swiglu_fallback_matches_native_on_one_input_forward_and_backward(
    paddle, native_swiglu, dtype, shape, seed
):
    with profiles.using("iluvatar"):
        assert compat.features()["swiglu"].path == "fallback"
        _assert_matches(paddle, compat.swiglu, native_swiglu, shape, dtype, seed, count=1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_swiglu_fallback_matches_native_on_two_inputs_forward_and_backward(
    paddle, native_swiglu, dtype, shape
):
    with profiles.using("iluvatar"):
        assert compat.features()["swiglu"].path == "fallback"
        _assert_matches(paddle, compat.swiglu, native_swiglu, shape, dtype, seed=7, count=2)


def test_swiglu_under_the_suite_profile_matches_native(paddle, native_swiglu):
    _assert_matches(paddle, compat.swiglu, native_swiglu, (6, 32), "float32", seed=3, count=1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_swiglu_fallback_agrees_with_native_in_half_precision_or_both_lack_the_kernel(
    paddle, native_swiglu, dtype
):
    # CPU paddle 3.3 has no float16/bfloat16 kernel for swiglu nor for silu, so here both
    # refuse alike; on a build that has them the values must agree to half precision.
    x = paddle.to_tensor(np.random.default_rng(5).standard_normal((4, 16)), dtype="float32").astype(dtype)
    outcomes = []
    with profiles.using("iluvatar"):
        for fn in (compat.swiglu, native_swiglu):
            try:
                outcomes.append(fn(x).astype("float32").numpy())
            except RuntimeError as exc:
                outcomes.append(type(exc))
    fallback, native = outcomes
    if isinstance(native, np.ndarray):
        assert isinstance(fallback, np.ndarray), (
            f"native swiglu runs in {dtype}, the fallback raised {fallback}"
        )
        np.testing.assert_allclose(fallback, native, rtol=2e-2, atol=2e-2)
    else:
        assert fallback is native, (
            f"native swiglu raised {native.__name__} in {dtype}, the fallback gave {fallback!r}"
        )


def test_swiglu_fallback_rejects_an_odd_last_axis_like_native(paddle, native_swiglu):
    x = paddle.ones([2, 5])
    with pytest.raises(ValueError, match="divi"):
        native_swiglu(x)
    with profiles.using("iluvatar"), pytest.raises(ValueError, match="divi"):
        compat.swiglu(x)


@pytest.mark.parametrize("full_graph", [True, False], ids=["ast", "sot"])
@pytest.mark.parametrize("profile", ["cpu", "iluvatar"], ids=["native", "fallback"])
def test_swiglu_works_inside_a_to_static_graph(paddle, native_swiglu, profile, full_graph):
    x = paddle.to_tensor(np.random.default_rng(9).standard_normal((3, 8)), dtype="float32")
    with profiles.using(profile):

        @paddle.jit.to_static(full_graph=full_graph)
        def layer(x):
            return compat.swiglu(x) * 2

        out = layer(x)
    np.testing.assert_allclose(out.numpy(), native_swiglu(x).numpy() * 2, **TOLERANCE["float32"])
