"""Paddle compatibility for model servers that run next to fdrouter.

Paddle builds on some accelerators lag behind: on the HPU and Iluvatar CI images ``paddle.compat`` or ``paddle.nn.functional.swiglu`` is missing and
custom python ops cannot be registered. This package is the one place that absorbs that:
each function below takes paddle's native path where it exists and a documented fallback
(or a clear error) where it does not. ``features()`` says which path each one takes and
why; ``python -m compat`` prints that as a table.

Importing compat never imports paddle (the router must stay paddle-free); paddle is
imported and probed once, on first use. Without paddle installed every function raises
PaddleMissing. The functions may be called inside ``paddle.jit.to_static`` code: they are
marked for paddle.jit the moment paddle is imported. ``compat.profiles`` emulates the
lagging platforms on CPU paddle.
"""

from __future__ import annotations

from compat import _paddle, probe, profiles
from compat.activation import swiglu
from compat.collective import decode_alltoall_transpose, tensor_model_parallel_all_reduce
from compat.errors import CompatError, OpUnavailable, PaddleMissing, UnknownProfile
from compat.probe import Feature, features, platform, reprobe
from compat.torch_proxy import enable_torch_proxy

# as soon as paddle is imported (now, if it already is), never importing it ourselves
_paddle.when_imported(probe.mark_for_jit)

__all__ = [
    "CompatError",
    "Feature",
    "OpUnavailable",
    "PaddleMissing",
    "UnknownProfile",
    "decode_alltoall_transpose",
    "enable_torch_proxy",
    "features",
    "platform",
    "profiles",
    "reprobe",
    "swiglu",
    "tensor_model_parallel_all_reduce",
]
