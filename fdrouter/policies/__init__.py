"""Routing policies: sans-IO objects that pick one instance from a snapshot.

The protocol (one signature for every policy, so the router and the simulator run the
very same objects)::

    class Policy:
        name: ClassVar[str]               # registry name, e.g. "request_num"
        needs: ClassVar[frozenset[str]]   # routing facts it reads, a subset of base.FACTS
        def __init__(self, *, option=default, ...): ...   # options: keyword-only, with defaults
        def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate: ...

``candidates`` is never empty (the router answers 503 before asking) and holds only
routable instances; a policy reads only ``url``, ``in_flight``, ``in_flight_tokens`` and
``remote`` of them, so the simulator can pass its own objects. ``choose`` is a plain
function: it must not await, touch sockets or read clocks (time comes in ``facts.now``).
``needs`` tells the router what to extract or run: ``prompt_tokens``/``prompt_text`` (parse
the prompt), ``session_key`` (read the ``session_header`` header, else the body's ``user``),
``remote_metrics`` (run the background ``/metrics`` scraper that fills ``Candidate.remote``),
``prompt_blocks`` (block keys, from the simulator only), ``kv_events`` (run the KV-event
subscriber that fills the policy's ``kv_index``; docs/kv_events.md).
``forget(url)`` is called when that instance is deregistered, so a policy that keeps
per-instance state drops it. ``BasePolicy`` gives the defaults (no needs, ``x-session-id``,
nothing to forget); ``choose`` is generic (``Sequence[C] -> C``): it returns one of the very
objects it was given.

Built in: random, round_robin, request_num, process_tokens, power_of_two (simple.py);
fd_metrics_score, remote_metrics (load_score.py); cache_aware (SGLang's; cache_aware.py, radix.py);
fd_cache_aware (FastDeploy Go router's scoring; fd_cache_aware.py); kv_events (the instances' reported
KV caches; kv_events.py); session_affinity (session.py).

Adding a policy without touching the router:

1. Write a class with ``name``, ``needs``, keyword-only options with defaults and ``choose``.
2. Either decorate it with ``@register_policy`` in a module that gets imported, or publish it
   under the entry-point group ``fdrouter.policies`` in your package's metadata::

       [project.entry-points."fdrouter.policies"]
       my_policy = "my_package.my_module:MyPolicy"

   Entry points are loaded on the first ``available_policies``/``make_policy`` call; a
   built-in or already registered name wins over an entry point of the same name.
3. ``make_policy(name, **options)`` builds it; ``policy_options(name)`` lists the options it
   accepts (from the constructor's signature), which is how ``--policy-option key=value``
   settings are validated.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from typing import Any

from .base import DEFAULT_SESSION_HEADER, FACTS, BasePolicy, Candidate, Policy, RemoteMetrics, RoutingFacts
from .cache_aware import CacheAware
from .fd_cache_aware import FdCacheAware
from .kv_events import KvEvents
from .load_score import FdMetricsScore, RemoteMetricsScore
from .session import SessionAffinity
from .simple import PowerOfTwo, ProcessTokens, RandomChoice, RequestNum, RoundRobin, least_loaded

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type] = {}
_ENTRY_POINT_GROUP = "fdrouter.policies"
_entry_points_loaded = False


def register_policy(cls: type) -> type:
    """Class decorator: make a policy available by its ``name``.

    A class that does not derive from ``BasePolicy`` is registered as a subclass that mixes the
    protocol's defaults in (``session_header``, ``forget``); the decorator returns ``cls`` itself.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"policy class {cls.__name__} needs a non-empty 'name' class attribute")
    if not callable(getattr(cls, "choose", None)):
        raise TypeError(f"policy class {cls.__name__} needs a choose(candidates, facts) method")
    needs = getattr(cls, "needs", None)
    if not isinstance(needs, (set, frozenset)) or not needs <= FACTS:
        raise TypeError(f"policy class {cls.__name__}: 'needs' must be a subset of {sorted(FACTS)}, got {needs!r}")
    _REGISTRY[name] = cls if issubclass(cls, BasePolicy) else type(cls.__name__, (cls, BasePolicy), {
        "__module__": cls.__module__, "__doc__": cls.__doc__, "__qualname__": cls.__qualname__,
    })
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            register_policy(ep.load())
        except Exception as exc:  # one broken plugin must not take the router down
            logger.warning("policy entry point %s = %s not loaded: %s", ep.name, ep.value, exc)


def available_policies() -> list[str]:
    """Names of every registered policy, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _policy_class(name: str) -> type:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(available_policies())}") from None


def policy_options(name: str) -> dict[str, Any]:
    """The keyword options policy ``name`` accepts, each with its default.

    A parameter without a default maps to ``inspect.Parameter.empty``.
    """
    params = inspect.signature(_policy_class(name)).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def make_policy(name: str, **options: Any) -> Policy:
    """A new policy object by registry name, with keyword ``options``.

    Raises ValueError for an unknown policy or an option the policy does not accept, and
    whatever the constructor raises for a bad value (ValueError naming the option).
    """
    cls = _policy_class(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    if not takes_any:
        accepted = policy_options(name)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(
                f"policy {name!r} does not accept option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(accepted)) or 'none'}"
            )
    return cls(**options)


for _cls in (RandomChoice, RoundRobin, RequestNum, ProcessTokens, PowerOfTwo,
             FdMetricsScore, RemoteMetricsScore, CacheAware, FdCacheAware, KvEvents, SessionAffinity):
    register_policy(_cls)

__all__ = [
    "DEFAULT_SESSION_HEADER", "FACTS", "BasePolicy", "Candidate", "Policy", "RemoteMetrics", "RoutingFacts", "available_policies", "least_loaded",
    "make_policy", "policy_options", "register_policy",
]
