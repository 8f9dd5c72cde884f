"""Feature probes: decide once which path each compat function takes, and say why.

Each compat function registers one probe. The first call to any compat function (or to
``features()``) imports paddle and runs every probe; the decisions are cached until a
platform profile is applied or ``reprobe()`` is called. Each decision that is not the
native path is logged once, on the ``compat`` logger, when it is made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from compat import _paddle, profiles
from compat.errors import OpUnavailable, PaddleMissing

logger = logging.getLogger("compat")

# The public functions, in the order features() and `python -m compat` list them.
FUNCTIONS = (
    "enable_torch_proxy",
    "swiglu",
    "tensor_model_parallel_all_reduce",
    "decode_alltoall_transpose",
)

Path = Literal["native", "fallback", "unavailable"]


@dataclass(frozen=True)
class Feature:
    """Which path one compat function takes on this paddle build (native / fallback / unavailable) and why."""

    name: str
    path: Path
    reason: str


@dataclass(frozen=True)
class Decision:
    """A probe's answer: the report, and what to call (None when unavailable)."""

    feature: Feature
    impl: Callable[..., Any] | None


# A probe gets paddle and a dict it shares with the other probes of the same round, for
# sub-probes several functions depend on (custom op registration).
Probe = Callable[[ModuleType, dict[str, Any]], Decision]

_probes: dict[str, Probe] = {}
_public: list[Callable[..., Any]] = []
_lock = threading.Lock()
# (profiles.generation() the round ran under, decisions, why paddle is missing or None)
_cache: tuple[int, dict[str, Decision], PaddleMissing | None] | None = None


def register(name: str) -> Callable[[Probe], Probe]:
    """Decorator: ``probe`` decides the path of the compat function ``name``."""
    if name not in FUNCTIONS:
        raise ValueError(f"{name!r} is not a compat function; known: {', '.join(FUNCTIONS)}")

    def decorate(probe: Probe) -> Probe:
        _probes[name] = probe
        return probe

    return decorate


def public(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for compat's public functions, so mark_for_jit can find them."""
    _public.append(fn)
    return fn


def mark_for_jit(paddle: ModuleType) -> None:
    """Tell ``paddle.jit`` not to rewrite compat's public functions (run when paddle is imported).

    Left unmarked, ``to_static`` would rewrite a compat function called inside a compiled
    model, and then the probing machinery behind it, which it cannot (``global`` state).
    Each function already works on static values: it only picks and calls an
    implementation that does (paddle's op, the registered op, or plain paddle calls).
    FastDeploy marks its own versions of these ops the same way.
    """
    marker = getattr(getattr(paddle.jit, "marker", None), "unified", None)
    # builds without paddle.jit.marker have not_to_static, which marks for AST mode only
    # (SOT came later); both attach the mark to the function itself
    marker = marker or getattr(paddle.jit, "not_to_static", None)
    if marker is None:
        return
    for fn in _public:
        marker(fn)


def native(name: str, reason: str, impl: Callable[..., Any]) -> Decision:
    """A decision for paddle's own implementation."""
    return Decision(Feature(name, "native", reason), impl)


def fallback(name: str, reason: str, impl: Callable[..., Any]) -> Decision:
    """A decision for compat's replacement of something this paddle lacks."""
    return Decision(Feature(name, "fallback", reason), impl)


def unavailable(name: str, reason: str) -> Decision:
    """A decision that calling ``name`` raises OpUnavailable with ``reason``."""
    return Decision(Feature(name, "unavailable", reason), None)


def features() -> dict[str, Feature]:
    """Which path each compat function takes on the installed paddle, and why (probes on first use)."""
    decisions, _ = _decide()
    return {name: decisions[name].feature for name in FUNCTIONS}


def reprobe() -> dict[str, Feature]:
    """Forget the cached decisions, probe again, and return the new features()."""
    global _cache
    with _lock:
        _cache = None
    return features()


def resolve(name: str) -> Callable[..., Any]:
    """What compat function ``name`` should call; PaddleMissing or OpUnavailable if nothing."""
    decisions, missing = _decide()
    if missing is not None:
        raise PaddleMissing(f"compat.{name} needs paddle: {missing}") from missing
    decision = decisions[name]
    if decision.impl is None:
        raise OpUnavailable(f"{name} is unavailable on {platform()}: {decision.feature.reason}")
    return decision.impl


def platform() -> str:
    """Where we run, for messages: device and paddle version, and the emulated profile if any."""
    try:
        paddle = _paddle.load()
    except PaddleMissing:
        device, version = "unknown device", "no paddle"
    else:
        device, version = paddle.device.get_device().split(":")[0], f"paddle {paddle.__version__}"
    profile = profiles.active()
    if profile.masks:
        return f"{profile.name} (profile emulated on {device}, {version})"
    return f"{device} ({version})"


def _decide() -> tuple[dict[str, Decision], PaddleMissing | None]:
    global _cache
    cache = _cache
    if cache is not None and cache[0] == profiles.generation():
        return cache[1], cache[2]
    with _lock:
        # taken before probing: a profile applied meanwhile leaves this round stale, not wrong
        generation = profiles.generation()
        if _cache is not None and _cache[0] == generation:
            return _cache[1], _cache[2]
        try:
            paddle = _paddle.load()
        except PaddleMissing as exc:
            reason = f"paddle is not available: {exc}"
            _cache = (generation, {name: unavailable(name, reason) for name in FUNCTIONS}, exc)
            return _cache[1], exc
        shared: dict[str, Any] = {}
        decisions = {name: _probes[name](paddle, shared) for name in FUNCTIONS}
        for decision in decisions.values():
            _log(decision.feature)
        _cache = (generation, decisions, None)
        return decisions, None


def _log(feature: Feature) -> None:
    if feature.path == "fallback":
        logger.warning("compat.%s uses its fallback: %s", feature.name, feature.reason)
    elif feature.path == "unavailable":
        # calling it raises with this same reason; nothing is degraded until then
        logger.info("compat.%s is unavailable: %s", feature.name, feature.reason)


__all__ = [
    "FUNCTIONS",
    "Decision",
    "Feature",
    "Path",
    "Probe",
    "fallback",
    "features",
    "mark_for_jit",
    "native",
    "platform",
    "public",
    "register",
    "reprobe",
    "resolve",
    "unavailable",
]
