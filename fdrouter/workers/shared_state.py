"""What the processes of one multi-worker router share, and where it lives.

``fdrouter serve --workers N`` runs a supervisor and N worker processes. The supervisor makes a
state directory holding:

- ``state`` (+ ``state.lock``): the shared memory (``shared_memory.py``): registry, health
  verdicts, remote metrics, per-worker load and admission counts;
- ``metrics/``: prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``), so any
  worker's ``/metrics`` reports the whole router and counts survive a worker's restart;
- ``<name>.sock``: each process's Unix datagram socket (``peer_exchange.py``).

A ``SharedState`` is one process's handle on all of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .shared_memory import Layout, SharedMemory

SUPERVISOR = "supervisor"
"""The supervisor's name among the peers; workers are ``worker-<i>``."""
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_name(index: int) -> str:
    """A worker's name among the peers."""
    return f"worker-{index}"


@dataclass
class SharedState:
    """One process's handle on the router's shared state (``worker`` is None in the supervisor)."""

    directory: Path
    workers: int
    max_instances: int
    worker: int | None = None
    shm: SharedMemory = field(init=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        create = self.worker is None
        self.shm = SharedMemory(self.directory / "state", Layout.for_instances(self.workers, self.max_instances),
                                create=create)
        if create:
            self.metrics_dir.mkdir(exist_ok=True)

    @property
    def name(self) -> str:
        """This process's name among the peers."""
        return SUPERVISOR if self.worker is None else worker_name(self.worker)

    @property
    def peers(self) -> list[str]:
        """Every process's name: the supervisor and each worker."""
        return [SUPERVISOR, *(worker_name(i) for i in range(self.workers))]

    @property
    def metrics_dir(self) -> Path:
        """prometheus_client's multiprocess directory."""
        return self.directory / "metrics"

    def close(self) -> None:
        """Unmap the shared memory."""
        self.shm.close()


def multiprocess_metrics() -> bool:
    """Whether this process writes prometheus_client's multiprocess files (a worker's does)."""
    return bool(os.environ.get(METRICS_ENV))


__all__ = ["METRICS_ENV", "SUPERVISOR", "SharedState", "multiprocess_metrics", "worker_name"]
