"""One worker process of ``fdrouter serve --workers N`` (started by the supervisor).

A worker is a whole router: its own event loop (uvloop when installed), upstream pools and
aiohttp application, bound with ``SO_REUSEPORT`` to the port the supervisor reserved, and
attached to the router's shared state. It tells the supervisor it is ready (or why it is
not) through a pipe, ignores SIGINT (the supervisor decides), and drains like a single
router on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from ..app_state import ACTIVE_KEY
from ..config import RouterConfig
from ..logs import LogRetention, configure_logging
from .shared_state import SharedState

log = logging.getLogger(__name__)


def worker_main(config: RouterConfig, index: int, workers: int, directory: str, ready: Connection) -> None:
    """The worker process's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    _drain_when_the_supervisor_dies()
    if os.getppid() != parent:  # it died before the request above took effect
        return
    configure_logging(config.log_level, config.log_format, secrets=[config.api_key, config.admin_api_key],
                      output=config.log_output, file=config.log_file, worker=index,
                      retention=LogRetention(config.log_max_age_days, config.log_max_total_size_mb,
                                             config.log_cleanup_interval_secs))
    try:
        import uvloop  # optional: fdrouter[speed]
    except ImportError:
        asyncio.run(_serve(config, index, workers, directory, ready))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(config, index, workers, directory, ready))


async def _serve(config: RouterConfig, index: int, workers: int, directory: str, ready: Connection) -> None:
    from ..server import RouterServer

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    shared = SharedState(Path(directory), workers, config.max_instances, worker=index)
    try:
        server = RouterServer(config, shared=shared)
        try:
            await server.start()
        except Exception as exc:  # the port is taken, the shared state is unreadable ...
            ready.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        ready.send(("ready", index))
        ready.close()
        log.info("worker %d serving on port %d (pid %d)", index, server.port, os.getpid())
        try:
            await stop.wait()
            log.info("worker %d shutting down: %d request(s) in progress", index, len(server.app[ACTIVE_KEY]))
        finally:
            await server.close()
    finally:
        with contextlib.suppress(Exception):
            shared.close()


def _drain_when_the_supervisor_dies() -> None:
    """Linux: SIGTERM this worker (a graceful drain) if the supervisor dies, even by SIGKILL."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


__all__ = ["worker_main"]
