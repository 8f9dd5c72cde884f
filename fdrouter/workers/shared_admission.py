"""Admission control across the worker processes: one global limit and one global queue bound.

Each worker publishes its own admitted and queued counts in shared memory (one writer per
number, no lock); a worker admits a request when the sum over all workers is below
``max_concurrent``, and refuses to queue one when the sum of queues is at ``queue_size``. A
slot freed in this worker goes straight to this worker's oldest waiter, as in
``AdmissionControl``; a slot freed in another worker is noticed by a short poll (every
``POLL_SECS``) that runs only while this worker has requests waiting, i.e. only under overload.

Two workers deciding in the same instant can both admit the last slot: the limit holds to
within ``workers - 1`` requests (documented; no cross-process lock on the request path).
"""

from __future__ import annotations

import asyncio
import contextlib

from ..admission import AdmissionControl
from .shared_memory import SharedMemory

POLL_SECS = 0.005


class SharedAdmission(AdmissionControl):
    """``AdmissionControl`` whose counts are the sums over every worker of the router."""

    def __init__(self, max_concurrent: int | None, *, shm: SharedMemory, worker: int, queue_size: int = 100,
                 queue_timeout_secs: float | None = 60.0, retry_after_secs: int = 1) -> None:
        super().__init__(max_concurrent, queue_size=queue_size, queue_timeout_secs=queue_timeout_secs,
                         retry_after_secs=retry_after_secs)
        self._shm = shm
        self._index = worker * 2
        self._poller: asyncio.Task | None = None
        self._changed()

    @property
    def active(self) -> int:
        """Requests admitted and not yet finished, in every worker."""
        return sum(self._shm.admission[0::2])

    @property
    def queued(self) -> int:
        """Requests waiting for a slot, in every worker."""
        return sum(self._shm.admission[1::2])

    def _has_room(self) -> bool:
        return self.active < self.max_concurrent

    def _queue_full(self) -> bool:
        return self.queued >= self.queue_size

    def _changed(self) -> None:
        admission = self._shm.admission
        admission[self._index] = self._active
        admission[self._index + 1] = len(self._waiters)

    def _queued_waiter(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="fdrouter-admission-poll")

    async def _poll(self) -> None:
        """While requests wait here, hand them slots that other workers freed."""
        with contextlib.suppress(asyncio.CancelledError):
            while self._waiters:
                await asyncio.sleep(POLL_SECS)
                while self._waiters and self._has_room():
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        self._active += 1
                        waiter.set_result(None)
                    self._changed()


__all__ = ["POLL_SECS", "SharedAdmission"]
