"""The registry of a multi-worker router: one copy in shared memory, mirrored by every process.

The shared copy is a list of records, one per instance::

    {"slot": 3, "gen": 17, "info": {<a /register body>}, "health": "healthy", "requests_base": 120}

- ``slot`` indexes the per-slot arrays (load counters, health verdicts, remote metrics);
- ``gen`` (generation) is new at every registration that takes a slot: a health verdict names
  the generation it is about, so a verdict on an instance deregistered a moment ago never
  lands on the next one in its slot;
- ``health`` is the state the registering process saw (it probed the instance); the
  supervisor's verdicts take over from there;
- ``requests_base`` is the slot's dispatched-request count when it was taken, so each
  registration counts its own ``requests_total``.

Writers (``publish``, ``unpublish``) hold the writers' lock for a read-modify-write. Readers
(``RegistryMirror.poll``, on every request) compare three version words with the last seen
and only do work when one moved: that is the whole per-request cost.

A slot is free when no record holds it and no worker still counts a request in flight on it
(a deregistered instance's running requests finish and release their slot's counts first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import TooManyInstances
from ..health_state import Health, HealthTracker
from ..instances import InstanceInfo
from ..policies.base import RemoteMetrics
from ..registry import InstanceState, Registry
from .shared_memory import LOAD_FIELDS, SharedMemory

log = logging.getLogger(__name__)

_HEALTH_CODES = list(Health)  # a verdict's code is its index here


def health_word(gen: int, health: Health) -> int:
    """The health array's word: the generation the verdict is about, and the verdict."""
    return gen << 8 | _HEALTH_CODES.index(health)


class SharedInstanceState(InstanceState):
    """An instance whose load is the sum over every worker (this worker writes only its own row)."""

    __slots__ = ("slot", "gen", "_shm", "_mine", "_requests_base")

    def __init__(self, info: InstanceInfo, health: HealthTracker, breaker: Any, *, shm: SharedMemory,
                 slot: int, gen: int, worker: int | None, requests_base: int) -> None:
        super().__init__(info, health, breaker)
        self.slot = slot
        self.gen = gen
        self._shm = shm
        self._mine = shm.load_index(worker, slot) if worker is not None else -1
        self._requests_base = requests_base

    def _reset_load(self) -> None:
        pass  # the counts live in shared memory

    def _sum(self, field: int) -> int:
        load = self._shm.load
        return sum(load[self.slot * LOAD_FIELDS + field::self._shm.layout.slots * LOAD_FIELDS])

    @property
    def in_flight(self) -> int:  # type: ignore[override]
        return self._sum(0)

    @property
    def in_flight_tokens(self) -> int:  # type: ignore[override]
        return self._sum(1)

    @property
    def requests_total(self) -> int:  # type: ignore[override]
        return self._sum(2) - self._requests_base

    def add_load(self, requests: int, tokens: int) -> None:
        """Count a leg in this worker's own row of the slot."""
        load, i = self._shm.load, self._mine
        load[i] += requests
        load[i + 1] += tokens
        if requests > 0:
            load[i + 2] += requests


def _free_slot(shm: SharedMemory, records: list[dict]) -> int:
    used = {r["slot"] for r in records}
    for slot in range(shm.layout.slots):
        if slot not in used and shm.total_load(slot)[:2] == (0, 0):
            return slot
    raise TooManyInstances(
        f"the router already has {len(records)} instances registered, its limit (--max-instances); "
        "deregister one first")


def publish(shm: SharedMemory, info: InstanceInfo, health: Health) -> None:
    """Add an instance to the shared registry, or refresh its info (same slot and generation)."""
    with shm.writer():
        _, records = shm.read_registry()
        body = info.to_register_dict()
        for record in records:
            if (record["info"]["host_ip"], record["info"]["port"]) == info.key:
                if record["info"] == body:
                    return  # a heartbeat that changes nothing: no write, no version bump
                record["info"] = body
                break
        else:
            slot = _free_slot(shm, records)
            gen = shm.next_generation()
            shm.health[slot] = health_word(gen, health)
            records.append({"slot": slot, "gen": gen, "info": body, "health": health.value,
                            "requests_base": shm.total_load(slot)[2]})
        shm.write_registry(records)


def unpublish(shm: SharedMemory, key: tuple[str, int]) -> bool:
    """Remove an instance from the shared registry; False if it was not there."""
    with shm.writer():
        _, records = shm.read_registry()
        kept = [r for r in records if (r["info"]["host_ip"], r["info"]["port"]) != key]
        if len(kept) == len(records):
            return False
        shm.write_registry(kept)
        return True


class RegistryMirror:
    """Keeps a process's local Registry equal to the shared one: new, changed, removed instances,
    health verdicts and remote metrics, each applied when its version word moves."""

    def __init__(self, registry: Registry, shm: SharedMemory, *, worker: int | None,
                 on_removed: Callable[[InstanceState], None], apply_health: bool = True) -> None:
        self.registry = registry
        self.shm = shm
        self.worker = worker
        self.on_removed = on_removed
        self.apply_health = apply_health
        self._seen = (-1, -1, -1)

    def poll(self) -> None:
        """Apply whatever changed since the last call (three word reads when nothing did)."""
        shm = self.shm
        seen = (shm.registry_version, shm.health_version, shm.remote_version)
        if seen == self._seen:
            return
        if seen[0] != self._seen[0]:
            self._load_registry()
        if seen[1] != self._seen[1] and self.apply_health:
            self._load_health()
        if seen[2] != self._seen[2]:
            self._load_remote()
        self._seen = seen

    def _load_registry(self) -> None:
        _, records = self.shm.read_registry()
        registry = self.registry
        wanted: set[tuple[str, int]] = set()
        for record in records:
            info = InstanceInfo.from_dict(record["info"])
            wanted.add(info.key)
            current = registry.get(info.key)
            if isinstance(current, SharedInstanceState) and current.gen == record["gen"]:
                if current.info != info or current.info.to_register_dict() != record["info"]:
                    registry.add(info)  # refreshed info (a heartbeat that changed something)
                continue
            if current is not None:
                registry.remove(info.key)
                self.on_removed(current)
            tracker, breaker = registry.new_state(info, Health(record["health"]))
            registry.adopt(SharedInstanceState(info, tracker, breaker, shm=self.shm, slot=record["slot"],
                                               gen=record["gen"], worker=self.worker,
                                               requests_base=record["requests_base"]))
        for state in registry.all():
            if state.info.key not in wanted:
                registry.remove(state.info.key)
                self.on_removed(state)
        self._load_health()  # a new instance's verdict may already be there

    def _load_health(self) -> None:
        words = self.shm.health
        for state in self.registry.all():
            if not isinstance(state, SharedInstanceState):
                continue
            word = words[state.slot]
            if word >> 8 == state.gen:
                self.registry.set_health(state, _HEALTH_CODES[word & 0xFF])

    def _load_remote(self) -> None:
        remote = self.shm.remote
        for state in self.registry.all():
            if isinstance(state, SharedInstanceState):
                base = state.slot * 3
                scraped_at = remote[base + 2]
                if scraped_at > 0:
                    state.remote = RemoteMetrics(running=remote[base], waiting=remote[base + 1],
                                                 scraped_at=scraped_at)


__all__ = ["RegistryMirror", "SharedInstanceState", "health_word", "publish", "unpublish"]
