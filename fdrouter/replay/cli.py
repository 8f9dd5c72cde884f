"""``fdrouter replay TRACE --url ROUTER``: replay a trace against a live router, open loop.

Wire it into a parser with ``add_replay_parser(subparsers)`` and dispatch to
``run_replay(args)``. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
from typing import Any

from .client import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_SECS

__all__ = ["add_replay_parser", "format_replay_summary", "main", "run_replay"]


def add_replay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    p = subparsers.add_parser(
        "replay",
        help="replay a trace against a live router (open loop, arrival times honoured)",
        description="Send every request of a trace (fdrouter's JSONL or Mooncake's format) to a router "
        "at its arrival time divided by --speedup, streaming, and summarise TTFT, E2E, errors and the "
        "prefix-cache hit rate from the answers' cached_tokens. Block-id prompts become text "
        "deterministically (equal ids, equal text), so an engine's prefix cache sees the trace's reuse. "
        "Ctrl-C stops at once and prints what was measured.",
    )
    p.add_argument("trace", metavar="TRACE", help="JSONL trace (format detected per file)")
    p.add_argument("--url", required=True, help="the router, e.g. http://127.0.0.1:9000")
    p.add_argument("--speedup", type=float, default=1.0, metavar="X",
                   help="send X times faster than the trace's timestamps (default 1)")
    p.add_argument("--requests", type=int, default=None, metavar="N", help="the first N requests only")
    p.add_argument("--block-tokens", type=int, default=None, metavar="N",
                   help="tokens per hash_ids block of a Mooncake trace (default 512)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECS, metavar="SECS",
                   help=f"total time allowed per request (default {DEFAULT_TIMEOUT_SECS:g})")
    p.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT, metavar="N",
                   help=f"open requests at most; later ones wait and count as late (default {DEFAULT_MAX_IN_FLIGHT})")
    p.add_argument("--model", default=None, help="the body's 'model' (default: none sent)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="ask for exactly the trace's output length (ignore_eos, min_tokens: vLLM/FastDeploy)")
    p.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY'")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    return p


def _error(message: str) -> int:
    print(f"fdrouter replay: error: {message}", file=sys.stderr)
    return 2


_ROWS = (  # key, label, format
    ("requests", "requests", "{}"), ("completed", "completed", "{}"), ("errors", "errors", "{}"),
    ("ttft_p50", "TTFT p50", "{:.3f} s"), ("ttft_p99", "TTFT p99", "{:.3f} s"),
    ("e2e_p50", "E2E p50", "{:.3f} s"), ("e2e_p99", "E2E p99", "{:.3f} s"),
    ("tpot_p50", "TPOT p50", "{:.4f} s"), ("throughput_rps", "throughput", "{:.2f} req/s"),
    ("cache_hit_rate", "cache hit rate", "{:.1%}"), ("late_p99", "sent late p99", "{:.3f} s"),
    ("makespan_s", "wall time", "{:.1f} s"),
)


def format_replay_summary(summary: dict[str, Any]) -> str:
    """The summary as an aligned two-column table (error kinds on one line)."""
    lines = []
    for key, label, fmt in _ROWS:
        value = summary.get(key)
        if value is None:
            continue
        text = "n/a" if isinstance(value, float) and not math.isfinite(value) else fmt.format(value)
        lines.append(f"{label:<16} {text}")
    if summary.get("error_kinds"):
        lines.append(f"{'error kinds':<16} " + ", ".join(f"{k} {v}" for k, v in summary["error_kinds"].items()))
    if summary.get("stopped"):
        lines.append("stopped early (interrupted)")
    return "\n".join(lines)


async def _replay(args: argparse.Namespace, requests: list) -> Any:
    from .client import replay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bar = None
    if args.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(requests), unit="req", desc="replay", file=sys.stderr)
    try:
        return await replay(requests, args.url, speedup=args.speedup, timeout=args.timeout,
                            max_in_flight=args.max_in_flight, model=args.model, ignore_eos=args.ignore_eos,
                            api_key=args.api_key, stop=stop, on_done=(lambda _: bar.update()) if bar else None)
    finally:
        if bar is not None:
            bar.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_replay(args: argparse.Namespace) -> int:
    """Run the ``replay`` subcommand: 0 when every request succeeded, 1 when some failed,
    2 on bad input, 130 when interrupted (the summary of what was measured is printed anyway)."""
    from ..extras import MissingExtra, require

    try:
        require("sim", what="fdrouter replay")  # tqdm for the progress bar
    except MissingExtra as exc:
        return _error(str(exc))
    from ..sim.trace import TraceError, load_trace

    if not 0 < args.speedup < math.inf:
        return _error(f"--speedup must be > 0, got {args.speedup:g}")
    if not 0 < args.timeout < math.inf:
        return _error(f"--timeout must be > 0, got {args.timeout:g}")
    if args.requests is not None and args.requests < 1:
        return _error(f"--requests must be >= 1, got {args.requests}")
    if args.max_in_flight < 1:
        return _error(f"--max-in-flight must be >= 1, got {args.max_in_flight}")
    if not args.url.startswith(("http://", "https://")):
        return _error(f"--url must be an http:// or https:// URL, got {args.url!r}")
    try:
        trace = load_trace(args.trace, block_tokens=args.block_tokens)
    except TraceError as exc:
        return _error(str(exc))
    requests = list(trace if args.requests is None else trace[:args.requests])
    run = asyncio.run(_replay(args, requests))
    summary = {"trace": args.trace, "url": args.url, "speedup": args.speedup, **run.summary}
    if args.json:
        print(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}))
    else:
        print(format_replay_summary(summary))
    if run.stopped:
        return 130
    return 1 if summary["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m fdrouter.replay.cli ...``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="fdrouter")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    return run_replay(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
