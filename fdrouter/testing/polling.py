"""Waiting for a condition without sleeping blindly: poll it, bounded."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` (a function or a coroutine function) until true or ``timeout``; bounded,
    returns the last answer.

    The timeout only costs time when the condition never comes true, so it is generous: on a
    loaded 2-core machine what takes a millisecond can take a second, and that must not fail a test.
    """

    async def answer() -> bool:
        result = predicate()
        return bool(await result if inspect.isawaitable(result) else result)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await answer():
        if loop.time() >= deadline:
            return await answer()
        await asyncio.sleep(interval)
    return True
