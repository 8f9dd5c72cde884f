"""Simulator events: what happens, when, and the one key that orders them.

The queue orders by ``(time, kind, seq)`` (vidur's ``simulator.py``): ``seq`` is a counter
on the simulator, so two events at the same time and of the same kind pop in the order
they were made, and a run depends on nothing but its inputs. At equal times an instance
finishing work goes first (freed capacity is visible to the next decision), then a KV
cache landing on a decode instance, then a metrics scrape, then a new arrival (so a
policy reading remote metrics at that instant sees the fresh scrape).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple


class Kind(IntEnum):
    """Event kinds; the value is the tie-break at equal times."""

    WAKE = 0
    """An instance reaches the end of a prefill iteration or of a run of decode steps."""
    KV_READY = 1
    """A prefilled request's KV cache has reached its decode instance (splitwise)."""
    SCRAPE = 2
    """The background metrics scraper refreshes every instance's ``remote``."""
    ARRIVAL = 3
    """A client request reaches the router."""
    KV_EVENT = 4
    """A change of an instance's prefix cache reaches the router's KV-event index (``kv_feed``);
    one due at the very instant of an arrival lands just after that request was routed."""


class Event(NamedTuple):
    """A follow-up returned by a handler; the loop stamps the sequence number."""

    time: float
    kind: Kind
    payload: Any = None


__all__ = ["Event", "Kind"]
