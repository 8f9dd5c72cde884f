"""Fixtures of the rig's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session without a total timeout: tests that time answers bound their waits themselves."""
    async with aiohttp.ClientSession() as s:
        yield s
