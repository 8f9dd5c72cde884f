"""Multi-worker mode (``fdrouter serve --workers N``): where routing state leaves the process.

N worker processes serve one port (``SO_REUSEPORT``) and act as one router, because what
routing reads is shared between them. Everything that crosses a process boundary lives here;
the rest of ``fdrouter`` is one process and knows only the two seams ``Router`` and
``build_app`` take (a ``SharedState``, and through it a ``FleetLink`` and ``SharedAdmission``).

- ``supervisor.py``: starts the workers, restarts one that dies, drains them all on SIGTERM;
  ``fleet.py``: what it does once for the whole router (health checks, ``/metrics`` scrapes,
  static instances);
- ``worker.py``: one worker process, a whole router attached to the shared state;
  ``fleet_link.py``: that router's link to the others (registry, health verdicts, learning);
- ``shared_memory.py``: the one ``mmap`` every process maps (registry, health verdicts,
  remote metrics, per-worker load and admission counts), never locked on a request's path;
  ``shared_state.py``: a process's handle on it and the state directory;
  ``shared_registry.py``: the registry in it, mirrored by every process;
  ``shared_admission.py``: admission control counted over every worker;
- ``peer_exchange.py``: advisory messages between the processes (Unix datagrams, never
  waited for).

Only the cycle-free entry points are imported here: the modules that plug into ``Router`` and
the aiohttp app (``fleet_link``, ``worker``) import those, so they are imported by name.
"""

from .shared_state import SharedState
from .supervisor import Supervisor

__all__ = ["SharedState", "Supervisor"]
