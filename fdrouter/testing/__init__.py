"""Test rig for fdrouter, for tests, notebooks and benchmarks alike.

- ``MockBackend`` / ``MockBehavior``: a mock OpenAI-compatible LLM instance and its knobs
  (``python -m fdrouter.testing.mock_backend`` runs one from the shell);
- ``cluster(mixed=2, ...)``: ``async with`` a router with registered mock backends, checked for
  leaks on exit (``clusters()`` for several); ``routers()`` and ``mock_backends()``: makers of
  servers that are closed on exit, ``leaks(server)``: what a router still counts;
- ``Spawner``: servers as child processes, waited for until they print ``listening on URL``;
- ``closed_port()`` / ``free_port()``: loopback ports; ``wait_until``: a bounded poll;
- ``fdrouter.testing.pytest_plugin``: the same as pytest fixtures.

``from fdrouter.testing import MockBackend, MockBehavior, closed_port, free_port``
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend_server import MockBackend
    from .behavior import MockBehavior
    from .factories import leaks, mock_backends, routers
    from .mock_cluster import Cluster, cluster, clusters
    from .polling import wait_until
    from .ports import closed_port, free_port
    from .processes import READY_LINE, ServiceProcess, Spawner

# name -> the module defining it. Imported lazily: `python -m fdrouter.testing.mock_backend` must
# not find its module already imported by the package (runpy warns, and it would exist twice).
_EXPORTS = {
    "MockBackend": "backend_server",
    "MockBehavior": "behavior",
    "leaks": "factories",
    "mock_backends": "factories",
    "routers": "factories",
    "Cluster": "mock_cluster",
    "cluster": "mock_cluster",
    "clusters": "mock_cluster",
    "wait_until": "polling",
    "closed_port": "ports",
    "free_port": "ports",
    "READY_LINE": "processes",
    "ServiceProcess": "processes",
    "Spawner": "processes",
}

__all__ = [
    "READY_LINE", "Cluster", "MockBackend", "MockBehavior", "ServiceProcess", "Spawner", "closed_port", "cluster",
    "clusters", "free_port", "leaks", "mock_backends", "routers", "wait_until",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
