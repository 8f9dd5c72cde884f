"""A deterministic discrete-event simulator of an LLM cluster behind a routing policy.

It runs the very policy objects the router runs, through the same ``choose(candidates,
facts)`` call, against instances timed by the same ``EngineModel`` and ``PrefixCache`` as
the mock backend, so rankings found here carry over to the live rig::

    from fdrouter.sim import simulate
    result = simulate("round_robin", "shared-prefix", instances=8, requests=10_000, rate=60, seed=1)
    result.summary["ttft_p99"], result.requests["instance"].value_counts()

Modules: ``workloads`` (named request generators) and ``trace`` (JSONL traces) make
requests; ``instance`` models one serving instance; ``events`` and ``engine`` are the
event loop and the router's routing step; ``results`` turns finished requests into a
DataFrame and a summary; ``api`` has ``simulate``; ``cli`` the ``simulate`` subcommand.
pandas is imported only when results are built, never by ``import fdrouter.sim``.
"""

from .api import build_policies, simulate
from .results import SUMMARY_KEYS, SimResult
from .simulator import ClusterConfig, Simulator
from .trace import Trace, TraceError, load_trace
from .workloads import Request, available_workloads, make_workload, synthetic_prompt

__all__ = [
    "SUMMARY_KEYS", "ClusterConfig", "Request", "SimResult", "Simulator", "Trace", "TraceError",
    "available_workloads", "build_policies", "load_trace", "make_workload", "simulate", "synthetic_prompt",
]
