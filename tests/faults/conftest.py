"""Helpers for the fault tests: router and mock backends as real processes, SSE parsing, /proc sampling.

Every process a test starts through ``spawn`` is killed at teardown if the test left it running;
every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from fdrouter.testing import wait_until
from fdrouter.testing.processes import ServiceProcess, Spawner

Proc = ServiceProcess  # what ``spawn.backend()`` and ``spawn.router()`` return


@pytest_asyncio.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawner]:
    """A ``fdrouter.testing.Spawner``: ``await spawn.backend(*flags)`` starts a mock backend process,
    ``await spawn.router(*flags)`` an ``fdrouter serve`` one, each on a port held until teardown
    (a killed one's port refuses connections instead of being free for another process to take).
    Every process it started is killed (SIGKILL) at teardown if still running."""
    async with Spawner(tmp_path) as spawner:
        yield spawner


# -- answers ---------------------------------------------------------------------------------


def sse_data(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    out = []
    for event in body.decode("utf-8", errors="replace").split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def is_openai_error(obj: Any) -> bool:
    """``{"error": {"message": str, "type": str, "code": ...}}``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("error"), dict):
        return False
    error = obj["error"]
    return isinstance(error.get("message"), str) and isinstance(error.get("type"), str) and "code" in error


def stream_text(events: list[str]) -> str:
    """The generated text of a chat or completions stream (token chunks only)."""
    text = []
    for data in events:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices", ()):
            delta = choice.get("delta")
            text.append((delta or {}).get("content") or choice.get("text") or "")
    return "".join(text)


def expected_text(tokens: int) -> str:
    """What a mock backend generates: ``tok0 tok1 ...``."""
    return "".join(f"tok{i} " for i in range(tokens))


def classify(status: int, body: bytes, *, stream: bool, tokens: int) -> str:
    """One answer as ``ok``, ``error:<code>`` (clean error: JSON body or final SSE error event) or ``bad:<why>``.

    A 2xx answer is ``ok`` only if complete: a JSON body with choices, or a stream ending in
    ``[DONE]`` whose tokens are exactly the backend's (no gap, no duplicate from a second instance).
    """
    if status >= 300:
        try:
            obj = json.loads(body)
        except ValueError:
            return f"bad:{status} non-JSON error body"
        return f"error:{status}:{obj['error']['code']}" if is_openai_error(obj) else f"bad:{status} not OpenAI-shaped"
    if not stream:
        try:
            obj = json.loads(body)
        except ValueError:
            return "bad:2xx non-JSON body"
        return "ok" if isinstance(obj.get("choices"), list) and obj["choices"] else "bad:2xx without choices"
    events = sse_data(body)
    if not events:
        return "bad:empty stream"
    if events[-1] == "[DONE]":
        if stream_text(events) != expected_text(tokens):
            return "bad:stream text differs from the backend's"
        return "ok"
    try:
        last = json.loads(events[-1])
    except ValueError:
        return "bad:stream cut inside an event"
    if is_openai_error(last):
        # the tokens before the error must still be a clean prefix of the answer
        if not expected_text(tokens).startswith(stream_text(events[:-1])):
            return "bad:stream text before the error differs from the backend's"
        return f"error:stream:{last['error']['code']}"
    return "bad:stream truncated without an error event"


# -- /proc -----------------------------------------------------------------------------------


def open_fds(pid: int) -> int:
    """File descriptors open in process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def poll(predicate: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.05) -> bool:
    """Await ``predicate()`` (a coroutine function) until truthy or ``timeout``; returns the last answer."""
    return await wait_until(predicate, timeout=timeout, interval=interval)


def kill_now(proc: Proc) -> None:
    """SIGKILL without waiting: the process dies with whatever it had in flight."""
    os.kill(proc.pid, signal.SIGKILL)
