"""A background loop that runs one round every interval: the base of the health monitor and the scraper."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``run_round()`` every ``interval`` seconds in a task; ``start()``/``stop()`` are idempotent.

    ``immediate`` runs the first round at start instead of one interval later. A round
    that raises is logged and the loop goes on: one bad round must not end it for good.
    """

    task_name = "fdrouter-periodic"

    def __init__(self, *, interval: float, immediate: bool) -> None:
        self._interval = interval
        self._immediate = immediate
        self._task: asyncio.Task | None = None
        self.rounds = 0

    async def run_round(self) -> None:
        """One round; subclasses do their work here."""
        raise NotImplementedError

    async def _run(self) -> None:
        if not self._immediate:
            await asyncio.sleep(self._interval)
        while True:
            try:
                await self.run_round()
            except Exception:
                log.exception("%s round failed", self.task_name)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        """Stop the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


__all__ = ["Periodic"]
