"""Routing policies: sans-IO objects that pick one instance from a snapshot.

The protocol (one signature for every policy, so the router and the simulator run the
very same objects)::

    class Policy:
        name: ClassVar[str]               # registry name, e.g. "request_num"
        needs: ClassVar[frozenset[str]]   # routing facts it reads: "prompt_tokens", "prompt_text", ...
        def choose(self, candidates: Sequence[Candidate], facts: RoutingFacts) -> Candidate: ...

``candidates`` is never empty (the router answers 503 before asking) and holds only
routable instances. ``choose`` must not await, touch sockets or read clocks.

Adding a policy without touching the router: decorate the class with
``@register_policy`` in any module that is imported, or publish it under the Python
entry-point group ``fdrouter.policies`` (``name = "package.module:Class"``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .base import Candidate, Policy, RoutingFacts
from .simple import ProcessTokens, RandomChoice, RequestNum, RoundRobin

_REGISTRY: dict[str, type] = {}
_ENTRY_POINT_GROUP = "fdrouter.policies"
_entry_points_loaded = False


def register_policy(cls: type) -> type:
    """Class decorator: make a policy available by its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"policy class {cls.__name__} needs a non-empty 'name' class attribute")
    if not callable(getattr(cls, "choose", None)):
        raise TypeError(f"policy class {cls.__name__} needs a choose(candidates, facts) method")
    _REGISTRY[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            register_policy(ep.load())


def available_policies() -> list[str]:
    """Names of every registered policy, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def make_policy(name: str, **options: Any) -> Policy:
    """A new policy object by registry name."""
    _load_entry_points()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(available_policies())}") from None
    return cls(**options)


for _cls in (RandomChoice, RoundRobin, RequestNum, ProcessTokens):
    register_policy(_cls)

__all__ = [
    "Candidate", "Policy", "RoutingFacts", "available_policies", "make_policy", "register_policy",
]
