"""``fdrouter serve --workers N``: N worker processes on one port, and a supervisor that keeps them.

Each worker is a whole router (its own event loop, upstream pools, aiohttp application) that
listens on the same port with ``SO_REUSEPORT``: the kernel spreads connections over them.
What must be the same in every worker -- the registry, health verdicts, load, admission,
metrics, what cache-aware policies learned -- goes through the shared state (``shared_state.py``).

The supervisor:
- makes the state directory and reserves the port (a bound, non-listening ``SO_REUSEPORT``
  socket: ``--port 0`` then means one free port for all workers);
- registers the static instances, then starts the workers and prints ``listening on URL``
  once every worker is;
- runs the fleet-wide background jobs once for all workers (``fleet.py``: health checks,
  ``/metrics`` scrapes);
- restarts a worker that dies (logged; the others keep serving; its in-flight counts are
  zeroed, its metrics files kept so counters survive);
- on SIGTERM/SIGINT, sends SIGTERM to every worker (each drains within the grace period) and
  exits 0 once they have exited (SIGKILL after the grace period and a margin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from ..config import RouterConfig
from .shared_state import METRICS_ENV, SharedState

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX_SECS = 30.0
STOP_MARGIN_SECS = 10.0  # beyond the grace period, before a worker that will not exit is killed


def usable_cores() -> int:
    """CPUs this process may run on (``--workers auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding ``port`` (0: a free one) for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Worker:
    """One worker slot: its current process and restart bookkeeping."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: BaseProcess | None = None
        self.started_at = 0.0
        self.quick_deaths = 0


class Supervisor:
    """Starts, watches, restarts and stops the worker processes (see the module docstring)."""

    def __init__(self, config: RouterConfig, workers: int) -> None:
        if workers < 2:
            raise ValueError("a supervisor runs 2 or more workers; one worker is a plain RouterServer")
        self.config = config
        self.count = workers
        self.directory = Path(tempfile.mkdtemp(prefix="fdrouter-"))
        self.shared = SharedState(self.directory, workers, config.max_instances)
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(i) for i in range(workers)]
        self._stopping = False
        self._reservation: socket.socket | None = None
        self.port = config.port

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set; 0 after a clean drain, 1 if the workers could not start."""
        from .fleet import FleetJobs

        self._reservation = reserve_port(self.config.host, self.config.port)
        self.port = self._reservation.getsockname()[1]
        os.environ[METRICS_ENV] = str(self.shared.metrics_dir)  # inherited by the spawned workers
        fleet = FleetJobs(self.config, self.shared)
        try:
            async with fleet:
                await fleet.add_static_instances()
                if not await self._start_all():
                    return 1
                host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
                url = f"http://{host}:{self.port}"
                log.info("fdrouter listening on %s with %d workers", url, self.count)
                print(f"fdrouter listening on {url} ({self.count} workers)", flush=True)
                watcher = asyncio.create_task(self._watch(), name="fdrouter-supervisor-watch")
                await stop.wait()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await self._stop_all()
            return 0
        finally:
            self.close()

    def close(self) -> None:
        """Release the port, the shared memory and the state directory (idempotent)."""
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None
        self.shared.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> Connection:
        from .worker import worker_main

        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main, name=f"fdrouter-worker-{worker.index}",
            args=(self.config.replace(port=self.port), worker.index, self.count, str(self.directory), send),
        )
        process.start()
        send.close()
        worker.process = process
        worker.started_at = time.monotonic()
        return receive

    async def _wait_ready(self, worker: _Worker, pipe: Connection, timeout: float = 60.0) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        assert worker.process is not None
        while loop.time() < deadline:
            if pipe.poll():
                try:
                    status, detail = pipe.recv()
                except EOFError:
                    status, detail = "failed", f"exited with code {worker.process.exitcode}"
                pipe.close()
                if status == "ready":
                    return True
                log.error("worker %d did not start: %s", worker.index, detail)
                return False
            if not worker.process.is_alive():
                pipe.close()
                log.error("worker %d exited with code %s while starting", worker.index, worker.process.exitcode)
                return False
            await asyncio.sleep(0.02)
        pipe.close()
        log.error("worker %d did not start within %gs", worker.index, timeout)
        return False

    async def _start_all(self) -> bool:
        pipes = [self._spawn(w) for w in self._workers]
        ready = await asyncio.gather(*(self._wait_ready(w, p) for w, p in zip(self._workers, pipes, strict=True)))
        if not all(ready):
            await self._stop_all()
            return False
        return True

    # -- watching and restarting --------------------------------------------------------------

    async def _watch(self) -> None:
        """Restart any worker that exits while the router is not stopping."""
        while True:
            for worker in self._workers:
                process = worker.process
                if process is not None and not process.is_alive() and not self._stopping:
                    await self._restart(worker)
            await asyncio.sleep(0.1)

    async def _restart(self, worker: _Worker) -> None:
        process = worker.process
        assert process is not None
        lived = time.monotonic() - worker.started_at
        log.warning("worker %d (pid %s) exited with code %s after %.1fs; restarting it",
                    worker.index, process.pid, process.exitcode, lived)
        _mark_dead(process.pid)
        self.shared.shm.reset_worker(worker.index)  # its in-flight requests died with it
        worker.quick_deaths = worker.quick_deaths + 1 if lived < 5.0 else 0
        if worker.quick_deaths > 1:  # crashing at start: back off, the others keep serving
            await asyncio.sleep(min(RESTART_BACKOFF_MAX_SECS, 0.5 * 2 ** worker.quick_deaths))
        pipe = self._spawn(worker)
        if not await self._wait_ready(worker, pipe):
            log.error("worker %d failed to restart; will try again", worker.index)

    # -- stopping -------------------------------------------------------------------------------

    async def _stop_all(self) -> None:
        self._stopping = True
        for worker in self._workers:
            if worker.process is not None and worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.config.shutdown_grace_period_secs + STOP_MARGIN_SECS
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            while process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.is_alive():
                log.warning("worker %d did not stop within the grace period; killing it", worker.index)
                process.kill()
            process.join(timeout=5)
            _mark_dead(process.pid)


def _mark_dead(pid: int | None) -> None:
    """Drop a dead worker's live gauge files (counters stay: they survive restarts)."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid)


__all__ = ["Supervisor", "reserve_port", "usable_cores"]
