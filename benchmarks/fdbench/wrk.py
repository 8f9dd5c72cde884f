"""The wrk load generator: one wrk run per measured round, closed loop, ``-c`` = concurrency.

wrk (the C load generator, ``apt-get install wrk``) costs ~20-100 us of CPU per request (the
most for streams; its own column in the per-scenario lines), the Python generator about as
much as a router does (~230 us); on a machine whose cores the generator shares with the
servers, that difference decides whether the ratios between targets show or are compressed
toward 1. wrk cannot see the first byte of an answer, so its
rows have no time to first byte. Its report is parsed by ``wrk_output``; the Lua script
(``wrk_done.lua``) dumps its latency histogram so percentiles pool across rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .proctree import tree_cpus
from .results import Result
from .workload import REQUEST_TIMEOUT, Scenario, request_body
from .wrk_output import DONE_MARK, WrkRun, parse_wrk_output

WRK_GRACE = 15.0  # seconds past its -d that a wrk run may take (it stops within ~0.1 s) before it is killed
# One wrk thread costs ~35 us CPU per request (~28k req/s per core), far above any target here; measured
# against -t 2 at c64 and c32 the req/s were the same within noise, and a second thread only takes CPU.
WRK_THREADS = 1
DONE_LUA = (Path(__file__).with_name("wrk_done.lua")).read_text().replace("MARK", DONE_MARK)


def lua_long_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal, which Lua takes verbatim (no escapes to get right)."""
    level = 0
    while f"]{'=' * level}]" in text + "]":  # the closing bracket must not occur in (or end) the text
        level += 1
    eq = "=" * level
    # Lua drops a newline right after the opening bracket: this one, not one the text starts with
    return f"[{eq}[\n{text}]{eq}]"


def wrk_script(body: bytes) -> str:
    """The Lua script for one request body: a static POST (built once per thread) plus the done() hook."""
    return ('wrk.method = "POST"\n'
            f"wrk.body = {lua_long_string(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            + DONE_LUA)


def wrk_version(path: str) -> str:
    """wrk's version string, e.g. ``debian/4.1.0-3+b2``, or ``?``."""
    try:
        # wrk -v prints its version, then the usage, and exits 1
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    match = re.search(r"wrk (\S+)", out)
    return match.group(1) if match else "?"


class WrkFailed(RuntimeError):
    """wrk ran but printed no report, e.g. ``unable to connect`` to a target that went away."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux only: wrk gets SIGTERM if the benchmark is killed before its finally can run (SIGKILL, OOM)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _wait_exited(pid: int) -> None:
    # WNOWAIT leaves the zombie, so the pid stays wrk's until wait4 reaps it (no signal can hit a reused pid)
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def run_wrk(wrk: str, url: str, script: Path, *, connections: int, threads: int, seconds: float) -> WrkRun:
    """Run wrk closed-loop against ``url`` for ``seconds`` (fractions too) and parse its report."""
    whole = max(1, math.ceil(seconds))
    argv = [wrk, "-c", str(connections), "-t", str(max(1, min(threads, connections))), "-d", f"{whole}s",
            "--timeout", f"{math.ceil(REQUEST_TIMEOUT)}s", "--latency", "-s", str(script), url]
    # a file, not a pipe: the histogram line can outgrow a pipe's buffer before anyone reads it
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        exited = asyncio.ensure_future(asyncio.to_thread(_wait_exited, proc.pid))
        try:
            if seconds < whole:
                # -d takes whole seconds; wrk's SIGINT handler ends the run early with the full report (a
                # SIGINT before wrk set that handler up is ignored, and -d still ends the run)
                await asyncio.wait({exited}, timeout=seconds)
                if not exited.done():
                    os.kill(proc.pid, signal.SIGINT)
            await asyncio.wait_for(asyncio.shield(exited), timeout=whole + WRK_GRACE)
        except BaseException as exc:  # cancelled, or wrk hung: it must not outlive the round
            os.kill(proc.pid, signal.SIGKILL)
            if isinstance(exc, TimeoutError):
                raise WrkFailed(f"wrk did not end within {whole + WRK_GRACE:g}s; killed") from None
            raise
        finally:
            # reaped here rather than by Popen, to read its CPU time from the resource usage
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    try:
        run = parse_wrk_output(text, connections)
    except ValueError as exc:
        raise WrkFailed(f"wrk exited with code {proc.returncode}: {exc}") from None
    run.cpu = usage.ru_utime + usage.ru_stime
    return run


class WrkLoad:
    """The wrk generator: ``-c concurrency``, closed loop, one Lua script per request body."""

    name = "wrk"

    def __init__(self, path: str, threads: int, prompt_chars: int, workdir: Path) -> None:
        self.path, self.threads, self.version = path, threads, wrk_version(path)
        self._scripts: dict[bool, Path] = {}
        for stream in (False, True):
            script = workdir / f"post-{'stream' if stream else 'once'}.lua"
            script.write_text(wrk_script(request_body(stream=stream, prompt_chars=prompt_chars)))
            self._scripts[stream] = script

    def describe(self) -> str:
        """One line for the header."""
        return (f"wrk {self.version} (-t {self.threads}: up to {self.threads} thread(s), -c = concurrency; "
                "no time to first byte)")

    async def run_slice(self, url: str, scenario: Scenario, seconds: float, result: Result, *,
                        proxy_pid: int | None = None, backend_pid: int | None = None) -> None:
        """Drive ``url`` for ``seconds`` with one wrk run and add the outcome to ``result``."""
        cpu_before = tree_cpus(proxy_pid, backend_pid)
        try:
            run = await run_wrk(self.path, url, self._scripts[scenario.stream], connections=scenario.concurrency,
                                threads=self.threads, seconds=seconds)
        except WrkFailed as exc:
            # a target that died mid-run costs its rows (as errors, like the Python generator's), not the run
            print(f"{result.target}: {exc}", file=sys.stderr, flush=True)
            result.errors += 1
            result.seconds += seconds
            return
        cpu_after = tree_cpus(proxy_pid, backend_pid)
        result.add_wrk_round(run, proxy=(cpu_before[0], cpu_after[0]), backend=(cpu_before[1], cpu_after[1]))


__all__ = ["DONE_LUA", "WRK_GRACE", "WRK_THREADS", "WrkFailed", "WrkLoad", "lua_long_string", "run_wrk",
           "wrk_script", "wrk_version"]
