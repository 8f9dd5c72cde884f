"""A deterministic discrete-event simulator of an LLM cluster behind a routing policy.

It runs the very policy objects the router runs, through the same ``choose(candidates,
facts)`` call, against instances timed by the same ``EngineModel`` and ``PrefixCache`` as
the mock backend, so rankings found here carry over to the live rig::

    from fdrouter.sim import simulate
    result = simulate("round_robin", "shared-prefix", instances=8, requests=10_000, rate=60, seed=1)
    result.summary["ttft_p99"], result.requests["instance"].value_counts()

Modules: ``workloads`` (named request generators) and ``trace`` (JSONL traces, fdrouter's
format or Mooncake's block-id format: ``mooncake``, ``block_requests``) make requests;
``synth_trace`` writes Mooncake-format traces with given statistics; ``engine_model`` times
an instance and ``engine_profiles`` names models derived from published numbers;
``instance`` models one serving instance; ``events`` and ``simulator`` are the event loop
and the router's routing step; ``results`` turns finished requests into a DataFrame and a
summary; ``api`` has ``simulate``; ``cli`` the ``simulate`` subcommand; ``data`` ships the
Mooncake FAST'25 synthetic trace (``data.MOONCAKE_SYNTHETIC_TRACE``). pandas is imported only
when results are built, never by ``import fdrouter.sim``.
"""

from .api import build_policies, simulate
from .block_requests import BlockRequest
from .engine_model import EngineModel
from .engine_profiles import available_engines, engine_profile
from .results import SUMMARY_KEYS, SimResult
from .simulator import ClusterConfig, Simulator
from .trace import Trace, TraceError, load_trace
from .workloads import Request, available_workloads, make_workload, synthetic_prompt

__all__ = [
    "SUMMARY_KEYS", "BlockRequest", "ClusterConfig", "EngineModel", "Request", "SimResult", "Simulator", "Trace",
    "TraceError", "available_engines", "available_workloads", "build_policies", "engine_profile", "load_trace",
    "make_workload", "simulate", "synthetic_prompt",
]
