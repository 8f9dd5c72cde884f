"""``enable_torch_proxy``: let ``import torch`` resolve to paddle, where paddle can.

Native: ``paddle.compat.enable_torch_proxy`` (paddle >= 3.2 ships ``paddle.compat``).
Fallback: on builds without ``paddle.compat`` (the HPU CI image) there is nothing to
enable; calling it is harmless, returns False, and the probe logs once why. The shim can
go when every platform build ships ``paddle.compat``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

from compat import probe


@probe.public
def enable_torch_proxy(*args: Any, **kwargs: Any) -> bool:
    """Call ``paddle.compat.enable_torch_proxy(*args, **kwargs)`` where it exists.

    Returns True when the proxy was enabled, False when this paddle has no
    ``paddle.compat`` (nothing is done then, and the reason is logged once). Never raises
    because paddle is old; raises PaddleMissing if paddle is not installed at all.
    """
    return probe.resolve("enable_torch_proxy")(*args, **kwargs)


def _call_native(native: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    native(*args, **kwargs)
    return True


def _do_nothing(*args: Any, **kwargs: Any) -> bool:
    return False


@probe.register("enable_torch_proxy")
def _probe(paddle: ModuleType, shared: dict[str, Any]) -> probe.Decision:
    name = "enable_torch_proxy"
    try:
        # import, not hasattr: the same check `import paddle.compat` in model code fails on
        native = importlib.import_module("paddle.compat").enable_torch_proxy
    # ImportError/AttributeError on builds without it; anything else from a half-working
    # paddle.compat means the same to callers: no proxy, and enable_torch_proxy never raises
    except Exception as exc:
        reason = f"paddle.compat.enable_torch_proxy is missing ({type(exc).__name__}: {exc}); calls do nothing and return False"
        return probe.fallback(name, reason, _do_nothing)
    return probe.native(name, "paddle.compat.enable_torch_proxy", partial(_call_native, native))


__all__ = ["enable_torch_proxy"]
