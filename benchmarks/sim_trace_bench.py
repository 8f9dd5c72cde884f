"""How long the simulator takes on a production-sized block-id trace.

Writes a trace with the statistics of the Mooncake FAST'25 release's conversation trace
(12,031 requests, ~12k-token prompts of ~24 512-token blocks, ~40% prefix reuse:
``fdrouter.sim.synth_trace.conversation_like``, seeded) to a temporary file, then times
``simulate()`` on it -- loading and checking the file included -- on 10 instances, per policy
and engine profile. Prints one line per run and, with ``--json``, the rows as JSON::

    python benchmarks/sim_trace_bench.py
    python benchmarks/sim_trace_bench.py --policies round_robin cache_aware --engines llama3-70b-8xa800
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fdrouter.sim import simulate
from fdrouter.sim.synth_trace import conversation_like, write_trace

__all__ = ["main", "run"]

DEFAULT_POLICIES = ("round_robin", "request_num", "cache_aware", "fd_cache_aware", "session_affinity")
DEFAULT_ENGINES = ("toy", "llama3-70b-8xa800")


def run(path: Path, policy: str, engine: str, instances: int) -> dict:
    """One timed simulation of the trace at ``path``; its headline numbers and wall time."""
    started = time.perf_counter()
    result = simulate(policy, f"trace:{path}", instances=instances, engine=engine)
    wall = time.perf_counter() - started
    s = result.summary
    return {"policy": policy, "engine": engine, "instances": instances, "requests": s["requests"],
            "wall_s": round(wall, 3), "cache_hit_rate": round(s["cache_hit_rate"], 4),
            "ttft_p50": round(s["ttft_p50"], 4), "ttft_p99": round(s["ttft_p99"], 4)}


def main(argv: list[str] | None = None) -> int:
    """Generate the trace, run every policy x engine, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12_031, help="trace length (default 12031, the release's)")
    parser.add_argument("--seed", type=int, default=0, help="trace seed (default 0)")
    parser.add_argument("--instances", type=int, default=10, help="simulated instances (default 10)")
    parser.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES))
    parser.add_argument("--engines", nargs="+", default=list(DEFAULT_ENGINES))
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list at the end")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conversation_like.jsonl"
        started = time.perf_counter()
        n = write_trace(conversation_like(requests=args.requests, seed=args.seed), path)
        print(f"wrote {n} requests ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.2f} s",
              file=sys.stderr)
        for engine in args.engines:
            for policy in args.policies:
                row = run(path, policy, engine, args.instances)
                rows.append(row)
                print(f"{policy:<17} {engine:<18} {row['requests']} requests on {args.instances} instances: "
                      f"{row['wall_s']:6.2f} s  (hit rate {row['cache_hit_rate']:.1%}, "
                      f"TTFT p50 {row['ttft_p50']:.3f} s, p99 {row['ttft_p99']:.3f} s)", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
