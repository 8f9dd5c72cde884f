"""The command line: flags, then the run as a whole (start targets, every scenario, the report)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from fdrouter.testing.processes import Spawner

from .goals import evaluate, targets_block
from .python_load import PythonLoad, client_session
from .report import LEGEND, build_table, environment, target_checks
from .results import Result
from .runner import NOISY_LOAD, check_answers, run_scenario
from .streams import memory_phase, raise_nofile
from .targets import (
    PEER_START_TIMEOUT,
    PEERS,
    SERVE_TIMEOUT,
    VLLM,
    available_peers,
    generation_urls,
    start_targets,
    target_pids,
    wait_serving,
)
from .workload import SCENARIOS, request_body
from .wrk import WRK_THREADS, WrkLoad

try:  # same optional speed-up the servers use; the generator must not be the slow part
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None  # type: ignore[assignment]

DESCRIPTION = ("Router overhead benchmark on loopback: direct vs fdrouter (with its own and with aiohttp's "
               "client pool) vs the per-request-session baseline.")
GENERATORS = ("auto", "wrk", "python")


async def bench(args: argparse.Namespace, spawner: Spawner, workdir: Path) -> dict:
    """Start everything, run every scenario on every target, print the table; returns the --json data.

    The children are stopped (SIGTERM, in reverse order) on the way out, whatever happens.
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loops
        # SIGTERM cancels the run like Ctrl-C does, so every finally runs
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await _bench(args, spawner, workdir)
    finally:
        await spawner.close(graceful=True)


async def _bench(args: argparse.Namespace, spawner: Spawner, workdir: Path) -> dict:
    env = environment(aiohttp.__version__, getattr(uvloop, "__version__", None))
    say = _printer()
    env["nofile"] = raise_nofile()  # the memory scenario's thousands of sockets; the children inherit it
    missing = {peer: "skipped (--no-peer)" if args.no_peer else "not installed"
               for peer, ok in available_peers().items() if args.no_peer or not ok}
    peers = tuple(p for p in PEERS if p not in missing)
    say(f"fdrouter bench: python {env['python']}, aiohttp {env['aiohttp']}, uvloop {env['uvloop'] or 'no'}, "
        f"fdrouter json {env['fdrouter_json']}, {env['cpus']} cpus, load average {_loadavg()}; "
        f"{args.duration:g}s per scenario in {args.rounds} interleaved rounds after {args.warmup:g}s warm-up; "
        f"RLIMIT_NOFILE {env['nofile'][0]}")
    for peer, why in missing.items():
        say(f"{peer}: {why}" + ("" if args.no_peer else f" (pip install {peer} to measure it as a peer)"))
    started = await start_targets(spawner, peers=peers)
    for peer in peers:
        if peer not in started:
            missing[peer] = "could not be started"
    urls, pids = generation_urls(started), target_pids(started)
    async with client_session() as session:
        load: PythonLoad | WrkLoad
        if args.generator == "wrk":
            load = WrkLoad(args.wrk_path, args.wrk_threads, args.prompt_chars, workdir)
            env["wrk"], env["wrk_threads"] = load.version, args.wrk_threads
        else:
            load = PythonLoad(session, args.prompt_chars)
        env["generator"] = load.name
        say(f"load generator: {load.describe()}")
        probe = request_body(stream=False, prompt_chars=args.prompt_chars)
        for name, url in list(urls.items()):
            try:
                timeout = PEER_START_TIMEOUT if name in PEERS else SERVE_TIMEOUT
                await wait_serving(session, name, url, probe, timeout)
            except RuntimeError as exc:
                if name not in PEERS:
                    raise
                # a peer that fails to serve costs its rows, not the run
                say(f"{name}: could not be measured: {exc}\n{started[name].log_text(30)}")
                del urls[name]
                missing[name] = "did not serve"
        say("ready: " + ", ".join(f"{n} {u}" for n, u in urls.items()))
        results: list[Result] = []
        for i, scenario in enumerate(SCENARIOS, 1):
            say(f"[{i}/{len(SCENARIOS)}] {scenario.name} ({'streaming' if scenario.stream else 'non-streaming'}, "
                f"{scenario.concurrency} concurrent) ...")
            if load.name == "wrk":
                bad = await check_answers(session, urls, scenario, args.prompt_chars)
                if bad:
                    say(f"  warning: {', '.join(bad)} gave a wrong answer to a checked request "
                        f"(non-200{' or stream without [DONE]' if scenario.stream else ''}); wrk would count it")
            found = await run_scenario(load, urls, scenario, duration=args.duration, warmup=args.warmup,
                                       rounds=args.rounds, pids=pids, say=say)
            results.extend(found.values())
    print()
    print(f"load generator: {load.describe()}")
    print(build_table(results))
    if load.name == "wrk":
        print("ttfb: not measured by wrk (it sees only whole answers); --generator python measures it")
    print(LEGEND)
    print()
    lines, checks = target_checks(results)
    for text in lines:
        print(text)
    noisy = sorted({r.scenario for r in results if (r.outside_load or 0) + (r.steal or 0) > NOISY_LOAD})
    if noisy:
        print(f"note: other processes or the hypervisor took > {NOISY_LOAD:.0%} of the CPU during: "
              f"{', '.join(noisy)}; rerun when the machine is quieter before drawing conclusions")
    summaries = [r.summary() for r in results]
    streams, skipped = [], "skipped (--streams 0)"
    if args.streams > 0:
        for proc in reversed(spawner.procs):  # the throughput targets are done: their CPU and fds go back
            await asyncio.to_thread(proc.stop)
        print()
        memory = await memory_phase(spawner, streams=args.streams, peers=tuple(p for p in peers if p == VLLM),
                                    prompt_chars=args.prompt_chars, say=say)
        streams = [s.summary() for s in memory]
        print(f"\nmemory: {args.streams} concurrent 16 s streams (16 tokens, 1 s apart), router RSS summed over its "
              "process tree, (peak - idle before) / streams:")
        for s in memory:
            print(s.line())
    goals = evaluate(summaries, streams, missing=missing, streams_skipped=skipped)
    print(f"\nload average at the end: {_loadavg()}")
    print(targets_block(goals))
    return {"environment": env, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "wrk_path")},
            "results": summaries, "checks": checks, "streams": streams, "missing_peers": missing,
            "targets": [{"name": g.name, "figure": g.figure, "threshold": g.threshold, "verdict": g.verdict}
                        for g in goals]}


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # not available on this platform
        return "?"


def _printer() -> Callable[[str], None]:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    return say


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(prog="bench_router.py", description=DESCRIPTION)
    parser.add_argument("--duration", type=float, default=None,
                        help="measured seconds per scenario and target (default 5; 1.5 with --quick)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="discarded warm-up seconds per scenario and target (default 1; 0.3 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds the duration is split into (default 5; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: numbers are noisier")
    parser.add_argument("--prompt-chars", type=int, default=1000, help="system prompt length (default 1000)")
    parser.add_argument("--no-peer", action="store_true",
                        help="do not measure the Rust peers (sglang-router, vllm-router) even if installed")
    parser.add_argument("--streams", type=int, default=None, metavar="N",
                        help="the memory scenario: N concurrent 16 s streams through fdrouter --workers 1 (and "
                             "vllm-router); 0 skips it (default 8000; 1000 with --quick)")
    parser.add_argument("--generator", choices=GENERATORS, default="auto",
                        help="load generator: wrk (the C one; apt-get install wrk), python (aiohttp; the only one "
                             "with time to first byte) or auto: wrk when on PATH, else python (default auto)")
    parser.add_argument("--wrk-threads", type=int, default=WRK_THREADS,
                        help=f"wrk threads, capped at the concurrency (default {WRK_THREADS}: on 2 cores one "
                             "thread is far from saturated and a second only takes CPU from the servers)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags with the --quick defaults filled in and the generator resolved (so --json records what ran)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration if args.duration is not None else (1.5 if quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 1.0)
    args.rounds = max(1, args.rounds if args.rounds is not None else (3 if quick else 5))
    args.streams = args.streams if args.streams is not None else (1000 if quick else 8000)
    if args.streams < 0:
        parser.error("--streams must be >= 0")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    if args.wrk_threads < 1:
        parser.error("--wrk-threads must be >= 1")
    args.wrk_path = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and args.wrk_path is None:
        parser.error("--generator wrk: no wrk on PATH (apt-get install wrk)")
    args.generator = "wrk" if args.wrk_path else "python"
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; every subprocess is stopped on the way out, whatever happens."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fdrouter-bench-") as tmp:
        workdir = Path(tmp)  # the servers' logs and wrk's scripts
        spawner = Spawner(workdir)
        try:
            coro = bench(args, spawner, workdir)
            data = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except asyncio.CancelledError:  # SIGTERM
            print("terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except RuntimeError as exc:
            print(f"bench_router: error: {exc}", file=sys.stderr)
            return 1
        finally:
            for proc in reversed(spawner.procs):  # only if the loop died before bench() could stop them
                proc.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


__all__ = ["DESCRIPTION", "GENERATORS", "bench", "build_parser", "main", "parse_args"]
