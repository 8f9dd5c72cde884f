"""Helpers for the fault tests: router and mock backends as real processes, SSE parsing, /proc sampling.

Every process a test starts through ``spawn`` is killed at teardown if the test left it running;
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio

from fdrouter.testing import closed_port

_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0  # a cold interpreter importing aiohttp + prometheus on a busy 2-core box


@dataclass
class Proc:
    """A child process that printed the URL it listens on; its stderr goes to ``log``."""

    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait(self, timeout: float) -> int:
        """The exit code; raises TimeoutError if the process is still running after ``timeout``."""
        return await asyncio.wait_for(self.process.wait(), timeout)

    def kill(self) -> None:
        """SIGKILL, unless it has exited already."""
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


class Spawner:
    """Starts ``python -m fdrouter.testing.mock_backend`` and ``python -m fdrouter serve`` processes.

    Each listens on a port held by `closed_port` until teardown (both bind with SO_REUSEADDR):
    when a test kills one, its port refuses connections, as a dead process's should, instead of
    being free for another process on the machine to take and answer on.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Proc] = []
        self._ports = contextlib.ExitStack()

    def hold_port(self) -> int:
        """A port held until teardown, for a process to listen on (and to be restarted on)."""
        return self._ports.enter_context(closed_port())

    async def _start(self, name: str, argv: list[str]) -> Proc:
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        proc = Proc(process, "", log)
        self.procs.append(proc)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"{name} printed no URL within {START_TIMEOUT}s; log:\n{proc.log_text()}") from None
        match = _URL.search(line)
        if match is None:
            proc.kill()
            await proc.process.wait()
            raise AssertionError(f"{name} did not start: {line!r}; log:\n{proc.log_text()}")
        proc.url = f"http://127.0.0.1:{int(match.group(1))}"
        return proc

    async def backend(self, *args: str) -> Proc:
        """A mock backend process (on a `hold_port` unless ``--port`` is given)."""
        argv = ["-m", "fdrouter.testing.mock_backend", *args]
        if "--port" not in args:
            argv += ["--port", str(self.hold_port())]
        return await self._start("backend", argv)

    async def router(self, *args: str) -> Proc:
        """An ``fdrouter serve`` process (on a `hold_port` unless ``--port`` is given; warnings only in its log)."""
        argv = ["-m", "fdrouter", "serve", *args]
        if "--port" not in args:
            argv += ["--port", str(self.hold_port())]
        if "--log-level" not in args:
            argv += ["--log-level", "warning"]
        return await self._start("router", argv)

    async def close(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()
            try:
                await proc.wait(10)
            except TimeoutError:  # pragma: no cover - a zombie we cannot do more about
                pass
        self._ports.close()


@pytest_asyncio.fixture
async def spawn(tmp_path):
    """A Spawner; every process it started is killed (SIGKILL) at teardown if still running."""
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        await spawner.close()


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


async def poll(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    """Await ``predicate()`` (a coroutine function) until truthy or ``timeout``; returns the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await predicate():
            return True
        if loop.time() >= deadline:
            return bool(await predicate())
        await asyncio.sleep(interval)


def kill_now(proc: Proc) -> None:
    """SIGKILL without waiting: the process dies with whatever it had in flight."""
    os.kill(proc.pid, signal.SIGKILL)
