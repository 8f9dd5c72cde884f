"""Servers as real child processes: start one, wait until it says ``listening on URL``, stop it.

One implementation for the fault tests, the benchmark and notebooks. Every server fdrouter
ships (``fdrouter serve``, ``python -m fdrouter.testing.mock_backend``, the benchmark's
baseline proxy) prints one line ``... listening on http://HOST:PORT ...`` once it is bound;
``Spawner.start`` waits for that line (bounded) and returns a ``ServiceProcess``.

Output goes to a log file, never to a pipe: a pipe nobody reads fills up and stalls the
child. Children die with the parent on Linux (``PR_SET_PDEATHSIG``), so a crashed test run
leaves no stray servers. Ports: pass one held by ``closed_port`` (see ``ports.py``) when the
test needs to know it first or to restart a server on it; otherwise ``--port 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .ports import closed_port

READY_LINE = re.compile(r"listening on (http://\S+)")
"""What a server prints once bound; group 1 is its base URL."""

START_TIMEOUT = 30.0
"""A cold interpreter importing aiohttp and prometheus_client on a busy 2-core machine."""


@dataclass
class ServiceProcess:
    """A child process that printed the URL it listens on; its stdout and stderr go to ``log``."""

    name: str
    process: subprocess.Popen
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def port(self) -> int:
        """The port of ``url``."""
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.process.poll()

    def log_text(self, last_lines: int | None = None) -> str:
        """What the child wrote so far (its last ``last_lines`` lines if given)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text if last_lines is None else "\n".join(text.splitlines()[-last_lines:])

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless the process has exited."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, at once, unless it has exited already."""
        self.signal(signal.SIGKILL)

    async def wait(self, timeout: float) -> int:
        """The exit code; raises TimeoutError if the process still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} (pid {self.pid}) still running after {timeout:g}s")
            await asyncio.sleep(0.02)
        return self.process.returncode

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code. Blocking; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode


class Spawner:
    """Starts server processes into ``logdir`` and stops every one of them on ``close()``, last first.

    ``python_module(name, module, *args)`` runs ``python -m module args`` with this interpreter,
    ``backend(*args)`` a mock backend, ``router(*args)`` ``fdrouter serve``; ``start(name, argv)``
    any command. ``async with Spawner(logdir) as spawn:`` closes on exit. Ports held with
    ``hold_port()`` stay held until ``close()``: a killed server's port then keeps refusing
    connections instead of reaching whoever took it next.
    """

    def __init__(self, logdir: str | Path, *, env: dict[str, str] | None = None) -> None:
        self.logdir = Path(logdir)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs: list[ServiceProcess] = []
        self._ports = contextlib.ExitStack()

    def hold_port(self) -> int:
        """A loopback port held until ``close()``, for a server to listen (and be restarted) on."""
        return self._ports.enter_context(closed_port())

    async def start(self, name: str, argv: Sequence[str], *, timeout: float = START_TIMEOUT,
                    own_session: bool = False) -> ServiceProcess:
        """Run ``argv`` and wait (bounded) until it prints ``listening on URL``.

        ``own_session`` puts the child in its own session, so a Ctrl-C in the terminal reaches only
        the parent, which then stops its children in order (the benchmark wants this).
        Raises RuntimeError with the end of the child's log if it exits or stays silent.
        """
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=own_session, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        proc = ServiceProcess(name, process, log)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while True:
            match = READY_LINE.search(proc.log_text())
            if match:
                proc.url = match.group(1)
                return proc
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; its log:\n{proc.log_text(30)}")
            if time.monotonic() >= deadline:
                proc.kill()
                raise RuntimeError(f"{name} printed no 'listening on URL' within {timeout:g}s; "
                                   f"its log:\n{proc.log_text(30)}")
            await asyncio.sleep(0.02)

    async def python_module(self, name: str, module: str, *args: str, **kwargs: object) -> ServiceProcess:
        """``python -m module args`` with this interpreter (see ``start``)."""
        return await self.start(name, [sys.executable, "-m", module, *args], **kwargs)  # type: ignore[arg-type]

    async def backend(self, *args: str) -> ServiceProcess:
        """``python -m fdrouter.testing.mock_backend args``, on a ``hold_port()`` unless ``--port`` is given."""
        port = () if "--port" in args else ("--port", str(self.hold_port()))
        return await self.python_module("backend", "fdrouter.testing.mock_backend", *args, *port)

    async def router(self, *args: str) -> ServiceProcess:
        """``python -m fdrouter serve args``, on a ``hold_port()`` unless ``--port`` is given, logging
        warnings and worse unless ``--log-level`` is given."""
        port = () if "--port" in args else ("--port", str(self.hold_port()))
        level = () if "--log-level" in args else ("--log-level", "warning")
        return await self.python_module("router", "fdrouter", "serve", *args, *port, *level)

    async def __aenter__(self) -> Spawner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, graceful: bool = False) -> None:
        """Stop every child, last started first (SIGKILL, or SIGTERM first if ``graceful``); free the ports."""
        while self.procs:
            proc = self.procs.pop()
            if graceful:
                await asyncio.to_thread(proc.stop)
            else:
                proc.kill()
                with contextlib.suppress(TimeoutError):
                    await proc.wait(10)
        self._ports.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


__all__ = ["READY_LINE", "START_TIMEOUT", "ServiceProcess", "Spawner"]
