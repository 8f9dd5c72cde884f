"""Admission control: at most N generation requests at once, a bounded FIFO queue behind them, 429 beyond.

Without it, an overload turns into thousands of requests piled on the instances' own queues,
every one of them slow; with it, the router sheds what it cannot serve soon, at once, with a
``Retry-After`` the client's SDK honours (OpenAI's Python SDK waits that long on a 429).

Rules:
- a free slot and nobody queued: admitted at once;
- otherwise the request queues, unless ``queue_size`` requests are already queued: then
  ``TooManyRequests`` (reason ``queue_full``) at once;
- a queued request that waits ``queue_timeout_secs`` gets ``TooManyRequests`` (reason
  ``queue_timeout``);
- a finishing request hands its slot straight to the oldest waiter (FIFO; newcomers never
  overtake the queue);
- a waiter that is cancelled (its client hung up) leaves the queue; if the slot reached it in
  the same instant, the slot goes on to the next waiter. Nothing leaks.

SGLang model gateway's launcher (sglang_router RouterArgs) ships max_concurrent_requests=256,
queue_size=100, queue_timeout_secs=60. ``max_concurrent`` of 0 or None disables the control:
``admit()`` then returns a shared no-op context manager.

All state changes run on the event loop thread with no await in between, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

from .errors import TooManyRequests

_DISABLED = contextlib.nullcontext()


class _Slot:
    """``async with`` body of ``AdmissionControl.admit()``: acquire on enter, release on exit."""

    __slots__ = ("_control",)

    def __init__(self, control: AdmissionControl) -> None:
        self._control = control

    async def __aenter__(self) -> None:
        await self._control._acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._control._release()


class AdmissionControl:
    """Bounded concurrency with a bounded, timed FIFO queue; see the module docstring for the rules."""

    def __init__(
        self,
        max_concurrent: int | None,
        *,
        queue_size: int = 100,
        queue_timeout_secs: float | None = 60.0,
        retry_after_secs: int = 1,
    ) -> None:
        if max_concurrent is not None and max_concurrent < 0:
            raise ValueError("max_concurrent must be >= 0 (0 or None disables admission control)")
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        if queue_timeout_secs is not None and queue_timeout_secs <= 0:
            raise ValueError("queue_timeout_secs must be > 0 (None waits forever)")
        if retry_after_secs < 0:
            raise ValueError("retry_after_secs must be >= 0")
        self.max_concurrent = max_concurrent or 0
        self.queue_size = queue_size
        self.queue_timeout_secs = queue_timeout_secs
        self.retry_after_secs = retry_after_secs
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._slot = _Slot(self)

    @property
    def enabled(self) -> bool:
        """Whether requests are limited at all."""
        return self.max_concurrent > 0

    @property
    def active(self) -> int:
        """Requests admitted and not yet finished."""
        return self._active

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def admit(self) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with control.admit():`` holds one slot for the body; raises ``TooManyRequests``."""
        return self._slot if self.max_concurrent > 0 else _DISABLED

    # -- hooks: what a shared (multi-process) admission counts differently ----------------

    def _has_room(self) -> bool:
        """Whether a slot is free now."""
        return self._active < self.max_concurrent

    def _queue_full(self) -> bool:
        """Whether the queue is at ``queue_size``."""
        return len(self._waiters) >= self.queue_size

    def _changed(self) -> None:
        """Called after every change of the counts (the shared admission publishes them)."""

    def _queued_waiter(self) -> None:
        """Called when a request starts waiting (the shared admission watches other processes)."""

    async def _acquire(self) -> None:
        if self._has_room() and not self._waiters:
            self._active += 1
            self._changed()
            return
        if self._queue_full():
            raise TooManyRequests(
                f"router at capacity: {self.active} requests running and {self.queued} queued "
                f"(queue full); retry in {self.retry_after_secs} s",
                retry_after=self.retry_after_secs,
                reason="queue_full",
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._changed()
        self._queued_waiter()
        try:
            async with asyncio.timeout(self.queue_timeout_secs):
                await waiter
        except TimeoutError:
            if _granted(waiter):
                return  # the slot arrived as the timer fired: keep it
            self._forget(waiter)
            raise TooManyRequests(
                f"router at capacity: waited {self.queue_timeout_secs:g} s in the admission queue "
                f"without a slot; retry in {self.retry_after_secs} s",
                retry_after=self.retry_after_secs,
                reason="queue_timeout",
            ) from None
        except BaseException:
            # cancelled (the client went away): give back whatever we hold
            if _granted(waiter):
                self._release()
            else:
                self._forget(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: active stays the same
                self._changed()
                return
        self._active -= 1
        self._changed()

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        # O(queue_size), only on timeout or cancellation
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        self._changed()


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()


__all__ = ["AdmissionControl"]
