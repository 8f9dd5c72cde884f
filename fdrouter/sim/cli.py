"""``fdrouter simulate``: run the cluster simulator from the command line.

Wire it into a parser with ``add_simulate_parser(subparsers)`` and dispatch to
``run_simulate(args)``. Nothing heavy is imported until the command runs, so adding the
subcommand costs the router's CLI nothing (and never imports pandas).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import yaml

DEFAULT_WORKLOAD = "shared-prefix"
DEFAULT_REQUESTS = 2000


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (numbers, booleans, strings), as ``serve`` reads it."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a cluster behind a routing policy (deterministic, no GPUs)",
        description="Discrete-event simulation of LLM instances (continuous batching, prefix cache) "
        "behind the router's own policy objects. Same seed, same numbers.",
        epilog="workloads: shared-prefix, multi-turn, long-short, uniform, trace:PATH (JSONL, the format "
        'detected per file: fdrouter\'s {"arrival": s, "prompt": text | "prompt_tokens": n, "output_tokens": n, '
        '"session": id} or Mooncake\'s {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": '
        "[...]}). Engines: " + ", ".join(_engines()) + ". Example, the Mooncake paper's 10 instances with 3M "
        "tokens of KV cache each: --workload trace:PATH --engine llama3-70b-8xa800 --instances 10 "
        "--cache-tokens 3000000",
    )
    p.add_argument("--policy", default=None, help="routing policy in mixed mode (default request_num)")
    p.add_argument("--workload", default=DEFAULT_WORKLOAD, help=f"workload name or trace:PATH (default {DEFAULT_WORKLOAD})")
    p.add_argument("--instances", type=int, default=8, help="mixed instances (default 8)")
    p.add_argument("--requests", type=int, default=None,
                   help=f"requests to simulate (default {DEFAULT_REQUESTS}; a trace: the first N, default all)")
    p.add_argument("--rate", type=float, default=40.0, help="arrival rate in requests/s (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--splitwise", action="store_true", help="prefill/decode disaggregation")
    p.add_argument("--prefill", type=int, default=None, help="prefill instances (splitwise; default instances/2)")
    p.add_argument("--decode", type=int, default=None, help="decode instances (splitwise; default instances/2)")
    p.add_argument("--prefill-policy", default="process_tokens", help="prefill policy (default process_tokens)")
    p.add_argument("--decode-policy", default="request_num", help="decode policy (default request_num)")
    p.add_argument("--policy-option", dest="policy_option", action="append", type=_option, default=[],
                   metavar="KEY=VALUE", help="policy option, repeatable, e.g. cache_threshold=0.5")
    p.add_argument("--engine", default=None, metavar="NAME",
                   help="engine profile timing every instance (default toy; see the list below)")
    p.add_argument("--cache-tokens", type=int, default=None, metavar="N",
                   help="prefix-cache (KV) capacity per instance in tokens (default: the engine's)")
    p.add_argument("--block-tokens", type=int, default=None, metavar="N",
                   help="tokens per hash_ids block of a Mooncake trace (default 512); for other "
                   "workloads the prefix cache's block size (default: the engine's)")
    p.add_argument("--time-scale", type=float, default=None, metavar="X",
                   help="multiply a trace's arrival times by X (0.5: twice as fast)")
    p.add_argument("--kv-event-delay", type=float, default=0.0, metavar="SECONDS",
                   help="delay of the instances' KV events to the kv_events policy's index (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object; for a given seed it is byte-identical "
                   "on every run except its \"meta\" key (wall time, version)")
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    return p


def _engines() -> list[str]:
    from .engine_profiles import available_engines  # light: no pandas

    return available_engines()


def _error(message: str) -> int:
    print(f"fdrouter simulate: error: {message}", file=sys.stderr)
    return 2


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


_ROWS = (  # key, label, format
    ("policy", "policy", "{}"), ("workload", "workload", "{}"), ("mode", "mode", "{}"),
    ("instances", "instances", "{}"), ("engine", "engine", "{}"), ("cache_tokens", "cache/instance", "{:,} tokens"),
    ("requests", "requests", "{}"),
    ("ttft_p50", "TTFT p50", "{:.3f} s"), ("ttft_p99", "TTFT p99", "{:.3f} s"),
    ("e2e_p50", "E2E p50", "{:.3f} s"), ("e2e_p99", "E2E p99", "{:.3f} s"),
    ("tpot_p50", "TPOT p50", "{:.4f} s"), ("queue_wait_mean", "queue wait mean", "{:.3f} s"),
    ("throughput_rps", "throughput", "{:.2f} req/s"), ("cache_hit_rate", "cache hit rate", "{:.1%}"),
    ("load_imbalance", "load imbalance", "{:.2f} (max/mean requests)"),
    ("prefill_load_imbalance", "  prefill", "{:.2f}"), ("decode_load_imbalance", "  decode", "{:.2f}"),
    ("makespan_s", "simulated time", "{:.1f} s"), ("wall_s", "wall time", "{:.2f} s"),
)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as an aligned two-column table."""
    lines = []
    for key, label, fmt in _ROWS:
        if key not in summary:
            continue
        value = summary[key]
        text = "n/a" if isinstance(value, float) and not math.isfinite(value) else fmt.format(value)
        lines.append(f"{label:<16} {text}")
    return "\n".join(lines)


def run_simulate(args: argparse.Namespace) -> int:
    """Run the ``simulate`` subcommand; 0 on success, 2 on bad input (message on stderr)."""
    from ..extras import MissingExtra, require

    try:
        require("sim", what="fdrouter simulate")
    except MissingExtra as exc:
        return _error(str(exc))
    from .api import simulate  # heavy imports only when the command runs

    if not args.rate > 0:
        return _error(f"--rate must be > 0 requests/s, got {args.rate:g}")
    requests = args.requests
    if requests is None and not args.workload.startswith("trace:"):
        requests = DEFAULT_REQUESTS
    if requests is not None and requests < 1:
        return _error(f"--requests must be >= 1, got {args.requests}")
    if args.cache_tokens is not None and args.cache_tokens < 0:
        return _error(f"--cache-tokens must be >= 0, got {args.cache_tokens}")
    if args.block_tokens is not None and args.block_tokens < 1:
        return _error(f"--block-tokens must be >= 1, got {args.block_tokens}")
    if args.time_scale is not None and not 0 < args.time_scale < math.inf:
        return _error(f"--time-scale must be > 0, got {args.time_scale:g}")
    if not args.kv_event_delay >= 0:
        return _error(f"--kv-event-delay must be >= 0 s, got {args.kv_event_delay:g}")
    if args.splitwise and args.policy is not None:
        print("fdrouter simulate: note: --policy is unused with --splitwise; "
              "use --prefill-policy and --decode-policy", file=sys.stderr)
    try:
        result = simulate(
            policy=args.policy or "request_num", workload=args.workload, instances=args.instances,
            requests=requests, rate=args.rate, seed=args.seed, splitwise=args.splitwise,
            prefill=args.prefill, decode=args.decode, prefill_policy=args.prefill_policy,
            decode_policy=args.decode_policy, policy_options=dict(args.policy_option), progress=args.progress,
            engine=args.engine, cache_tokens=args.cache_tokens, block_tokens=args.block_tokens,
            time_scale=args.time_scale, kv_event_delay=args.kv_event_delay,
        )
    except ValueError as exc:  # TraceError included
        return _error(str(exc))
    if args.json:
        out = {k: _clean(v) for k, v in result.summary.items()}
        out["meta"] = result.meta  # the only part that differs between two runs of one seed
        print(json.dumps(out))
    else:
        print(format_summary({**result.summary, **result.meta}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m fdrouter.sim.cli ...``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="fdrouter")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    return run_simulate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT_REQUESTS", "DEFAULT_WORKLOAD", "add_simulate_parser", "format_summary", "main", "run_simulate"]
