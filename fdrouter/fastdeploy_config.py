"""FastDeploy's Go router configuration keys that are not fdrouter settings of the same name.

A FastDeploy user's ``config.yaml`` (``fastdeploy/golang_router``,
``examples/run_with_config/config/config.example.yaml``) must run unchanged. Most of its keys
are fdrouter settings already (``server.port``, ``manager.health-*``, ``scheduler.policy`` ...,
declared in ``config.py``). The rest are listed here, each either

- **mapped** onto what fdrouter has with the Go router's meaning: a policy option for every
  configured policy that takes it (``SoftOption``; an option no configured policy takes is a
  warning, not an error, since the file was written for another router), a setting, or the
  static instance file (``manager.register-path``); or
- **ignored with a reason** (``Ignored``), printed once at start-up.

Where the Go router's algorithm differs from fdrouter's policy of the same name, the Go
router's is offered as its own policy: its prefill ``cache_aware`` is ``fd_cache_aware``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SoftOption:
    """A Go router key that becomes one or more policy options, converted to fdrouter's meaning."""

    options: tuple[tuple[str, Callable[[float], Any]], ...]
    """(policy option, converter from the Go value)."""
    why: str
    """What it does, for the warning when no configured policy takes it."""


@dataclass(frozen=True)
class Ignored:
    """A Go router key fdrouter accepts and does not use, with the reason."""

    why: str


def _same(value: float) -> Any:
    return value


def _minutes(value: float) -> float:
    return float(value) * 60.0


def _relative_threshold(value: float) -> float:
    # Go: imbalanced when (max - min) / max > r; SGLang's form (both cache-aware policies here):
    # max > min * rel.  (max - min) / max > r  <=>  max > min / (1 - r), so rel = 1 / (1 - r);
    # for r >= 1 the Go condition can never hold: never imbalanced.
    return math.inf if value >= 1 else 1.0 / (1.0 - value)


GO_ROUTER_KEYS: dict[tuple[str, str], SoftOption | Ignored | str] = {
    ("server", "mode"): Ignored("it sets the Go router's web framework mode (debug/release); "
                                "fdrouter's verbosity is log.level"),
    ("server", "name"): Ignored("the Go router does not use it either"),
    ("scheduler", "eviction-interval-secs"): Ignored(
        "it paces the Go router's clean-up of stale load counters; fdrouter undoes its counters per "
        "request, so there is nothing to clean up"),
    ("scheduler", "eviction-duration-mins"): SoftOption(
        (("eviction_interval_secs", _minutes), ("eviction_duration_secs", _minutes)),
        "how long cache-aware prefix entries live (cache_aware, fd_cache_aware)"),
    ("scheduler", "balance-abs-threshold"): SoftOption(
        (("balance_abs_threshold", _same),), "cache-aware load-imbalance threshold (cache_aware, fd_cache_aware)"),
    ("scheduler", "balance-rel-threshold"): SoftOption(
        (("balance_rel_threshold", _relative_threshold),),
        "cache-aware relative load-imbalance threshold (cache_aware, fd_cache_aware)"),
    ("scheduler", "hit-ratio-weight"): SoftOption(
        (("hit_ratio_weight", _same),), "weight of the prefix-hit ratio in FastDeploy's cache-aware score "
        "(fd_cache_aware; fdrouter's cache_aware is SGLang's algorithm and has no score)"),
    ("scheduler", "load-balance-weight"): SoftOption(
        (("load_balance_weight", _same),), "weight of the load in FastDeploy's cache-aware score (fd_cache_aware)"),
    ("scheduler", "cache-block-size"): SoftOption(
        (("cache_block_size", _same),), "block size of FastDeploy's cache-aware prefix hashing (fd_cache_aware)"),
    ("scheduler", "waiting-weight"): SoftOption(
        (("waiting_weight", _same),), "weight of waiting requests in the load score (fd_metrics_score, "
        "remote_metrics)"),
    ("scheduler", "tokenizer-url"): Ignored("fdrouter estimates prompt tokens from characters and calls no "
                                            "tokenizer service"),
    ("scheduler", "tokenizer-timeout-secs"): Ignored("fdrouter calls no tokenizer service"),
    ("manager", "register-path"): "register_path",
}
"""(section, key) -> how fdrouter takes it; a str is the name of a special case handled by the loader."""

# Go router keys with a cache-aware meaning: named in the warning when the configuration runs the
# SGLang cache_aware, so a FastDeploy user learns that fd_cache_aware is the Go router's algorithm.
_FD_ONLY_OPTIONS = frozenset({"hit_ratio_weight", "load_balance_weight", "cache_block_size"})


def resolve_soft_options(
    soft: Mapping[str, tuple[str, Any]], explicit: Mapping[str, Any], accepted: Mapping[str, set[str]]
) -> tuple[dict[str, Any], list[str]]:
    """The policy options the Go router keys give, and one warning per key that applies to none.

    ``soft``: option -> (the YAML key it came from, its converted value); ``explicit``: options
    set with ``scheduler.policy-options`` or ``--policy-option`` (they win); ``accepted``: policy
    name -> the options it takes, for the configured policies.
    """
    options: dict[str, Any] = {}
    used_by: dict[str, list[str]] = {}
    for option, (key, value) in soft.items():
        takers = [name for name, opts in accepted.items() if option in opts]
        if takers:
            used_by.setdefault(key, []).extend(takers)
            if option not in explicit:
                options[option] = value
        else:
            used_by.setdefault(key, [])
    warnings = []
    for key, takers in used_by.items():
        if takers:
            continue
        section, _, name = key.partition(".")
        spec = GO_ROUTER_KEYS[(section, name)]
        assert isinstance(spec, SoftOption)
        hint = ""
        if any(opt in _FD_ONLY_OPTIONS for opt, _ in spec.options) and "cache_aware" in accepted:
            hint = "; for FastDeploy's cache-aware scoring use the policy fd_cache_aware"
        warnings.append(f"{key}: not used: it is the {spec.why}, and no configured policy "
                        f"({', '.join(accepted) or 'none'}) takes it{hint}")
    return options, warnings


__all__ = ["GO_ROUTER_KEYS", "Ignored", "SoftOption", "resolve_soft_options"]
