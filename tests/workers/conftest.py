"""Helpers for the multi-worker tests: a router run as ``fdrouter serve --workers N`` in its own
process, and connections pinned to one worker (asked with ``GET /health``, which names it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from fdrouter.testing.processes import ServiceProcess, Spawner

CHAT = "/v1/chat/completions"


class Workers:
    """A running multi-worker router and ways to talk to each worker."""

    def __init__(self, proc: ServiceProcess, count: int) -> None:
        self.proc = proc
        self.count = count
        self.url = proc.url

    @contextlib.asynccontextmanager
    async def on(self, worker: int) -> AsyncIterator[aiohttp.ClientSession]:
        """A session whose one keep-alive connection is served by ``worker`` (bounded attempts)."""
        for _ in range(200):
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                            timeout=aiohttp.ClientTimeout(total=30))
            try:
                async with session.get(self.url + "/health") as resp:
                    found = (await resp.json())["worker"]
            except BaseException:
                await session.close()
                raise
            if found == worker:
                try:
                    yield session
                finally:
                    await session.close()
                return
            await session.close()
        raise AssertionError(f"no connection reached worker {worker} in 200 tries")

    async def pids(self) -> dict[int, int]:
        """Worker number -> pid, from /health on fresh connections (bounded)."""
        found: dict[int, int] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(200):
                async with http.get(self.url + "/health") as resp:
                    body = await resp.json()
                found[body["worker"]] = body["pid"]
                if len(found) == self.count:
                    break
        return found


@pytest_asyncio.fixture
async def workers(tmp_path) -> AsyncIterator[Any]:
    """``await workers(2, "--policy", "cache_aware")`` -> a started multi-worker router; stopped
    with SIGTERM at teardown, so its workers and state directory go with it."""
    spawner = Spawner(tmp_path)

    async def start(count: int, *args: str) -> Workers:
        proc = await spawner.router("--workers", str(count), "--port", "0", *args)
        return Workers(proc, count)

    try:
        yield start
    finally:
        await spawner.close(graceful=True)


async def chat(session: aiohttp.ClientSession, url: str, content: str = "hello", **body: Any) -> tuple[int, Any]:
    """One chat request; status and JSON body (or text)."""
    payload = {"model": "m", "messages": [{"role": "user", "content": content}], **body}
    async with session.post(url + CHAT, json=payload) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()
