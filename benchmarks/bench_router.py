"""Router overhead benchmark on loopback: direct vs fdrouter vs the per-request-session baseline.

One run starts a mock backend (zero token delay), fdrouter, the baseline proxy
(``baseline_proxy.py``: FastDeploy's pre-fix design) and, when ``sglang_router`` is
importable, sglang-router as a Rust peer, all in front of the same mock backend. It then
drives each target with a closed-loop load generator (N connections, each sending its next
request when the previous answer is complete) in three scenarios and prints requests/s and
p50/p99 latency with ratios:

- non-streaming at concurrency 1 (router-added latency) and 64 (throughput),
- streaming at concurrency 32 (full-stream latency; time to first byte with the Python generator).

This is a benchmark, not a test: it passes or fails nothing, it reports. The two targets
from the issue are printed at the end: fdrouter >= 2.5x the baseline's throughput at c64,
and router-added p50 at c1 <= 0.5 ms (both on the 2-core dev machine).

    python benchmarks/bench_router.py [--generator {auto,wrk,python}] [--duration S] [--quick] [--json FILE]

Load generator: ``wrk`` (the C load generator, ``apt-get install wrk``) when it is on PATH,
else a Python/aiohttp one. Generator, proxy and mock share the machine's cores, so the
generator must cost much less CPU per request than the proxy: the Python one spends about as
much as a router does (~230 us), which pulls every proxy's throughput toward the same
whole-path figure and compresses the ratios toward 1; wrk spends ~30 us. wrk cannot see the
first byte of an answer, so its tables have no time to first byte (``--generator python``
measures it). wrk's latency percentiles come from its full histogram, read by the Lua
script's ``done()`` hook, with wrk's coordinated-omission correction undone: a closed loop has
no schedule to omit, and the raw samples pool across rounds exactly like the Python
generator's.

Noise: generator and servers share the machine's cores, and so may other people's jobs.
Each scenario is therefore measured in several short rounds with the targets interleaved
(rotating order), so a burst of outside load hits every target alike instead of one. The
table also gives each proxy's CPU time per request (and the mock backend's, which a
per-request-session proxy drives up with a new connection per request), read from /proc:
that number moves much less with outside load than requests/s does.

Peer artifact: sglang-router (0.3.2 here) delivers each stream on a keep-alive connection
~40 ms late, with either generator, so its streaming rows are bound by that timer rather than
by CPU; with a new connection per request the delay is gone, the signature of Nagle's
algorithm on its client sockets meeting the client's delayed ACK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

try:  # the benchmark drives the installed project: say how to get it, not a traceback
    import aiohttp

    import fdrouter  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/test_extras.py
    sys.exit(f"bench_router: error: {exc.name or exc} is not installed; run `make bench` "
             "(or `pip install -e '.[speed]'` first)")

try:  # same optional speed-up the servers use; the generator must not be the slow part
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
ENDPOINT = "/v1/chat/completions"
OUTPUT_TOKENS = 16  # the mock's answer: 16 tokens, i.e. 16 SSE events + the final one + [DONE]
READY_LINE = re.compile(r"listening on (http://\S+)")
START_TIMEOUT = 20.0  # seconds for a Python server to print its ready line
PEER_START_TIMEOUT = 60.0  # sglang-router discovers its worker in a background workflow
REQUEST_TIMEOUT = 30.0  # per request: a hung target turns into errors, never a hung benchmark
NOISY_LOAD = 0.10  # others' CPU + steal above 10% of the machine: the scenario's ratios are suspect
WRK_GRACE = 15.0  # seconds past its -d that a wrk run may take (it stops within ~0.1 s) before it is killed
# One wrk thread costs ~35 us CPU per request (~28k req/s per core), far above any target here; measured
# against -t 2 at c64 and c32 the req/s were the same within noise, and a second thread only takes CPU.
WRK_THREADS = 1
GENERATORS = ("auto", "wrk", "python")

BASELINE, DIRECT, FDROUTER, SGLANG, MOCK = "baseline", "direct", "fdrouter", "sglang-router", "mock"
TARGET_ORDER = (DIRECT, FDROUTER, BASELINE, SGLANG)


@dataclass(frozen=True)
class Scenario:
    """One load shape: how many concurrent workers, streaming or not."""

    name: str
    concurrency: int
    stream: bool


SCENARIOS = (
    Scenario("non-stream c1", 1, False),
    Scenario("non-stream c64", 64, False),
    Scenario("stream c32", 32, True),
)
C1, C64 = SCENARIOS[0].name, SCENARIOS[1].name


@dataclass
class Result:
    """What one target did in one scenario, over all its rounds."""

    target: str
    scenario: str
    concurrency: int
    stream: bool
    generator: str = "python"
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    proxy_cpu: float | None = None
    """CPU seconds the proxy process (user + system) spent in the measured slices; None for direct."""
    backend_cpu: float | None = None
    """CPU seconds the mock backend spent in the measured slices."""
    generator_cpu: float = 0.0
    """CPU seconds this load generator spent in the measured slices."""
    outside_load: float | None = None
    """Fraction of the machine's CPU that other processes used during the scenario."""
    steal: float | None = None
    """Fraction of the machine's CPU the hypervisor took (steal time) during the scenario."""
    bytes_read: int | None = None
    """Response bytes (headers included) the generator read; wrk only, to spot cut or odd answers."""
    latencies: list[float] = field(default_factory=list, repr=False)
    ttfbs: list[float] = field(default_factory=list, repr=False)
    round_percentiles: list[tuple[int, dict[int, float]]] = field(default_factory=list, repr=False)
    """(requests, {pct: seconds}) per wrk round, used only when wrk gave no histogram to pool."""

    @property
    def rps(self) -> float:
        """Completed requests per second of measured time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cpu_us(self, seconds: float | None) -> float | None:
        """CPU microseconds per completed request, from a CPU-seconds total."""
        return seconds / self.requests * 1e6 if seconds is not None and self.requests else None

    def latency(self, pct: int) -> float | None:
        """The ``pct`` latency percentile in seconds over all rounds, or None without samples."""
        if self.latencies:
            return percentile(self.latencies, pct)
        # wrk without a histogram: the request-weighted mean of its per-round percentiles
        rounds = [(n, pcts[pct]) for n, pcts in self.round_percentiles if n and pct in pcts]
        total = sum(n for n, _ in rounds)
        return sum(n * value for n, value in rounds) / total if total else None

    def ttfb(self, pct: int) -> float | None:
        """The ``pct`` time-to-first-byte percentile in seconds; None when not measured (wrk)."""
        return percentile(self.ttfbs, pct)

    def summary(self) -> dict:
        """The JSON-friendly numbers (milliseconds), without the raw samples."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        for name in ("seconds", "proxy_cpu", "backend_cpu", "generator_cpu", "outside_load", "steal"):
            out[name] = _round(out[name], 4)
        out["rps"] = round(self.rps, 1)
        out["proxy_cpu_us_per_request"] = _round(self.cpu_us(self.proxy_cpu), 1)
        out["backend_cpu_us_per_request"] = _round(self.cpu_us(self.backend_cpu), 1)
        out["generator_cpu_us_per_request"] = _round(self.cpu_us(self.generator_cpu), 1)
        out["p50_ms"], out["p99_ms"] = _ms(self.latency(50)), _ms(self.latency(99))
        if self.stream:
            out["ttfb_p50_ms"], out["ttfb_p99_ms"] = _ms(self.ttfb(50)), _ms(self.ttfb(99))
        return out


def percentile(samples: list[float], pct: float) -> float | None:
    """Linear-interpolated percentile, or None without samples."""
    if not samples:
        return None
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (all its threads) from /proc; None off Linux or when gone.

    CPU per request moves less with outside load than requests/s does: on a shared 2-core
    machine throughput follows other people's jobs, the work one request costs much less so.
    """
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            # fields after the parenthesised command name; utime and stime are fields 14 and 15 of proc(5)
            stat = f.read().rpartition(")")[2].split()
        return (int(stat[11]) + int(stat[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat; None off Linux.

    Busy leaves out softirq time: loopback TCP work runs there and is mostly this benchmark's own.
    """
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, _softirq, steal = (int(v) for v in f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq) / _CLK_TCK, steal / _CLK_TCK


class OutsideLoad:
    """How much CPU others used while a scenario ran: the machine's busy time minus our processes'.

    Other people's test runs on a shared machine slow every process down, and the ratios with
    them; this says when a run's numbers deserve a rerun rather than a conclusion.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, tuple[float, float] | None, float]:
        # RUSAGE_CHILDREN holds the wrk runs that have ended (the servers are reaped only at the end)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (time.process_time() + children.ru_utime + children.ru_stime
                + sum(cpu_seconds(pid) or 0.0 for pid in self._pids.values()))
        return time.monotonic(), machine_cpu(), ours

    def fractions(self) -> tuple[float, float] | None:
        """(others' busy, steal) since creation, as fractions of all cores; None off Linux."""
        (t0, m0, ours0), (t1, m1, ours1) = self._start, self._sample()
        if m0 is None or m1 is None or t1 <= t0:
            return None
        capacity = (t1 - t0) * (os.cpu_count() or 1)
        return max(0.0, (m1[0] - m0[0]) - (ours1 - ours0)) / capacity, (m1[1] - m0[1]) / capacity


def _add(total: float | None, before: float | None, after: float | None) -> float | None:
    if before is None or after is None:
        return total
    return (total or 0.0) + after - before


# -- the servers ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Linux only: a child gets SIGTERM if the benchmark is killed before its finally can run (SIGKILL, OOM).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    """A loopback port that was free a moment ago (only for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Services:
    """The benchmark's subprocesses; ``stop_all`` ends every one of them, last started first."""

    def __init__(self) -> None:
        self._logdir = tempfile.TemporaryDirectory(prefix="fdrouter-bench-")
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.pids: dict[str, int] = {}

    def spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen, Path]:
        """Start ``argv`` with stdout+stderr to a log file (a pipe nobody reads could fill and stall it)."""
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # own session: a Ctrl-C reaches only the benchmark, whose finally stops the children in order
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.procs.append((name, proc, log))
        self.pids[name] = proc.pid
        return proc, log

    async def start(self, name: str, argv: list[str], *, timeout: float = START_TIMEOUT) -> str:
        """Start a server that prints ``... listening on URL`` and return that URL (bounded wait)."""
        proc, log = self.spawn(name, argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = READY_LINE.search(log.read_text(errors="replace"))
            if match:
                return match.group(1)
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; its log:\n{self.tail(log)}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} did not become ready within {timeout:g}s; its log:\n{self.tail(log)}")

    @property
    def workdir(self) -> Path:
        """The run's temporary folder (the services' logs, wrk's scripts); removed by ``stop_all``."""
        return Path(self._logdir.name)

    @staticmethod
    def tail(log: Path, lines: int = 30) -> str:
        """The end of a service's log, for error messages."""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGTERM every child, wait up to 5 s each, then SIGKILL; safe to call twice."""
        while self.procs:
            name, proc, _ = self.procs.pop()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    print(f"{name} ignored SIGTERM; killing it", file=sys.stderr)
                    proc.kill()
                    proc.wait(timeout=5)
        self._logdir.cleanup()


def _sglang_available() -> bool:
    try:
        return importlib.util.find_spec("sglang_router") is not None
    except (ImportError, ValueError):
        return False


async def start_targets(services: Services, *, with_peer: bool) -> dict[str, str]:
    """Start the mock backend and every proxy in front of it; target name -> generation URL."""
    py = sys.executable
    backend = await services.start(MOCK, [
        py, "-m", "fdrouter.testing.mock_backend", "--port", "0", "--role", "mixed",
        "--output-tokens", str(OUTPUT_TOKENS), "--token-delay", "0",
    ])
    fdrouter, baseline = await asyncio.gather(
        services.start(FDROUTER, [py, "-m", "fdrouter", "serve", "--port", "0", "--worker-urls", backend,
                                  "--log-level", "warning"]),
        services.start(BASELINE, [py, str(HERE / "baseline_proxy.py"), "--port", "0", "--backend", backend]),
    )
    bases = {DIRECT: backend, FDROUTER: fdrouter, BASELINE: baseline}
    if with_peer:
        port = free_port()
        # round_robin: the cheapest policy, like fdrouter's default request_num with one instance. Its
        # Prometheus exporter defaults to 0.0.0.0:29000, which could clash or expose: pin it to loopback.
        services.spawn(SGLANG, [
            py, "-m", "sglang_router.launch_router", "--host", HOST, "--port", str(port),
            "--worker-urls", backend, "--policy", "round_robin", "--log-level", "warn",
            "--prometheus-host", HOST, "--prometheus-port", str(free_port()),
        ])
        bases[SGLANG] = f"http://{HOST}:{port}"
    return {name: base + ENDPOINT for name, base in bases.items()}


# -- the load generator -------------------------------------------------------------------------------


def request_body(*, stream: bool, prompt_chars: int) -> bytes:
    """A chat request, encoded once: the generator must not spend its CPU on JSON per request."""
    # A system prompt plus a question, roughly the size of a short chat turn.
    prompt = ("You are a helpful assistant. Answer briefly. " * (prompt_chars // 46 + 1))[:prompt_chars]
    body = {
        "model": "mock-model",
        "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "Say hello."}],
        "max_tokens": OUTPUT_TOKENS,
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


_HEADERS = {"Content-Type": "application/json"}
_DONE = b"data: [DONE]\n\n"


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> tuple[bool, float | None]:
    """One request; returns (ok, seconds to the first body byte or None)."""
    start = time.perf_counter()
    async with session.post(url, data=body, headers=_HEADERS) as resp:
        if not stream:
            await resp.read()
            return resp.status == 200, None
        first = None
        tail = b""
        async for chunk in resp.content.iter_any():
            if first is None:
                first = time.perf_counter() - start
            tail = (tail + chunk)[-len(_DONE):]  # [DONE] may arrive split across reads
        # a stream cut before [DONE] is an error even with status 200
        return resp.status == 200 and tail == _DONE, first


async def _worker(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool, stop_at: float,
                  result: Result, ends: list[float]) -> None:
    while True:
        start = time.perf_counter()
        if start >= stop_at:
            return
        try:
            ok, ttfb = await _one(session, url, body, stream)
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok, ttfb = False, None
        end = time.perf_counter()
        ends.append(end)
        if ok:
            result.requests += 1
            result.latencies.append(end - start)
            if ttfb is not None:
                result.ttfbs.append(ttfb)
        else:
            result.errors += 1
            await asyncio.sleep(0.01)  # a refusing target must not turn the loop into a busy spin


async def run_slice(session: aiohttp.ClientSession, url: str, body: bytes, scenario: Scenario,
                    seconds: float, result: Result, *, proxy_pid: int | None = None,
                    backend_pid: int | None = None) -> None:
    """Drive ``url`` closed-loop for ``seconds`` and add the outcome (and the servers' CPU) to ``result``."""
    ends: list[float] = []
    # A GC pause in the generator would show up as router latency; the slice allocates little.
    gc.collect()
    gc.disable()
    try:
        cpu_before = cpu_seconds(proxy_pid), cpu_seconds(backend_pid), time.process_time()
        start = time.perf_counter()
        # requests time out after REQUEST_TIMEOUT, so this bound is never the one that ends a healthy slice
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT + 5), asyncio.TaskGroup() as group:
            for _ in range(scenario.concurrency):
                group.create_task(_worker(session, url, body, scenario.stream, start + seconds, result, ends))
        cpu_after = cpu_seconds(proxy_pid), cpu_seconds(backend_pid), time.process_time()
    finally:
        gc.enable()
    # measured time runs to the last completion: requests started before the deadline count in full
    result.seconds += (max(ends) if ends else time.perf_counter()) - start
    result.proxy_cpu = _add(result.proxy_cpu, cpu_before[0], cpu_after[0])
    result.backend_cpu = _add(result.backend_cpu, cpu_before[1], cpu_after[1])
    result.generator_cpu += cpu_after[2] - cpu_before[2]


class PythonLoad:
    """The closed-loop Python/aiohttp generator: one keep-alive session, one task per concurrent request.

    It measures time to first byte, which wrk cannot, but spends about as much CPU per request
    as the routers under test (see the module docstring).
    """

    name = "python"

    def __init__(self, session: aiohttp.ClientSession, prompt_chars: int) -> None:
        self._session = session
        self._bodies = {stream: request_body(stream=stream, prompt_chars=prompt_chars) for stream in (False, True)}

    def describe(self) -> str:
        """One line for the header."""
        return f"python/aiohttp {aiohttp.__version__} (one process, a task per connection, keep-alive)"

    async def run_slice(self, url: str, scenario: Scenario, seconds: float, result: Result, *,
                        proxy_pid: int | None = None, backend_pid: int | None = None) -> None:
        """Drive ``url`` for ``seconds`` and add the outcome to ``result``."""
        await run_slice(self._session, url, self._bodies[scenario.stream], scenario, seconds, result,
                        proxy_pid=proxy_pid, backend_pid=backend_pid)


# -- the wrk load generator ----------------------------------------------------------------------------

_WRK_MARK = "fdbench-wrk"
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}  # wrk's format_time_us
_BINARY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_WRK_PATTERNS = {
    "requests": re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGTP]?)B read", re.M),
    "rps": re.compile(r"^Requests/sec:\s*([\d.]+)", re.M),
    "socket": re.compile(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M),
    "status": re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)", re.M),
    "percentile": re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M),
    "done": re.compile(rf"^{_WRK_MARK} (.*)$", re.M),
}

# The Lua script's second half. done() runs once, in wrk's main Lua state, after the report is
# printed. wrk's Lua API hands out the latency histogram only one bucket at a time, each lookup
# scanning it from the start (quadratic), so the script reads wrk's ``stats`` struct through
# LuaJIT's FFI (wrk 4.x: count, limit, min, max, then one counter per microsecond) and prints
# the non-empty buckets on one line. Any failure prints "nohist": the text report is the fallback.
_WRK_DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  local line = string.format("%s duration_us=%d requests=%d bytes=%d errors=%d,%d,%d,%d,%d",
    "MARK", summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout)
  local ok, hist = pcall(function()
    local ffi = require("ffi")
    ffi.cdef("typedef struct { uint64_t count, limit, min, max; uint64_t data[?]; } fdbench_stats;")
    local s = ffi.cast("fdbench_stats **", latency)[0]
    local parts = {}
    if s.count > 0 then
      for us = tonumber(s.min), tonumber(s.max) do
        local n = tonumber(s.data[us])
        if n > 0 then parts[#parts + 1] = us .. ":" .. n end
      end
    end
    return table.concat(parts, ",")
  end)
  io.write(line, ok and (" hist=" .. hist) or " nohist", "\\n")
end
""".replace("MARK", _WRK_MARK)


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
            + _WRK_DONE_LUA)


@dataclass
class WrkRun:
    """One wrk run's numbers, parsed from its report (exact values from the done() line when present)."""

    responses: int
    """Complete responses of any status."""
    seconds: float
    rps: float
    bytes_read: int
    status_errors: int
    """Responses with a status above 399 (wrk's "Non-2xx or 3xx responses")."""
    socket_errors: dict[str, int]
    percentiles: dict[int, float]
    """wrk's printed 50/75/90/99% latency, in seconds (with wrk's coordinated-omission correction)."""
    histogram: dict[int, int] | None = None
    """Raw latency histogram, microseconds -> count; None when the script could not read it."""
    cpu: float = 0.0
    """wrk's own CPU seconds (user + system), from its resource usage."""

    @property
    def errors(self) -> int:
        """Failed requests: error statuses plus connect/read/write errors and timeouts."""
        return self.status_errors + sum(self.socket_errors.values())


def _seconds(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk_output(text: str, connections: int) -> WrkRun:
    """Parse wrk 4.x's ``--latency`` report (plus the script's done() line); ValueError if it has none.

    The report rounds (e.g. ``1.23ms``, ``4.56MB``); the done() line, when there, gives the run's
    duration in microseconds, exact byte and error counts and the latency histogram.
    """
    found = _WRK_PATTERNS["requests"].search(text)
    rps = _WRK_PATTERNS["rps"].search(text)
    if found is None or rps is None:
        raise ValueError("no wrk report in its output:\n" + "\n".join(text.splitlines()[-15:]))
    responses = int(found.group(1))
    run = WrkRun(
        responses=responses,
        rps=float(rps.group(1)),
        # Requests/sec is responses / runtime to 2 decimals: a finer runtime than the "in 1.00s" text
        seconds=responses / float(rps.group(1)) if float(rps.group(1)) > 0 else _seconds(*found.group(2, 3)),
        bytes_read=round(float(found.group(4)) * _BINARY_UNITS[found.group(5)]),
        status_errors=0,
        socket_errors=dict.fromkeys(("connect", "read", "write", "timeout"), 0),
        percentiles={int(m.group(1)): _seconds(*m.group(2, 3)) for m in _WRK_PATTERNS["percentile"].finditer(text)},
    )
    if (sock := _WRK_PATTERNS["socket"].search(text)) is not None:
        run.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    if (status := _WRK_PATTERNS["status"].search(text)) is not None:
        run.status_errors = int(status.group(1))
    if (done := _WRK_PATTERNS["done"].search(text)) is not None:
        _apply_done_line(run, done.group(1), connections)
    return run


def _apply_done_line(run: WrkRun, line: str, connections: int) -> None:
    fields_ = dict(part.split("=", 1) for part in line.split() if "=" in part)
    duration_us, responses = int(fields_["duration_us"]), int(fields_["requests"])
    connect, read, write, status, timeout = map(int, fields_["errors"].split(","))
    run.seconds = duration_us / 1e6 if duration_us > 0 else run.seconds
    run.bytes_read = int(fields_["bytes"])
    run.status_errors = status
    run.socket_errors = {"connect": connect, "read": read, "write": write, "timeout": timeout}
    if "hist" not in fields_:
        return
    hist = {}
    for pair in filter(None, fields_["hist"].split(",")):
        us, count = pair.split(":")
        hist[int(us)] = int(count)
    raw = undo_wrk_correction(hist, duration_us, responses, connections)
    # every response but those slower than --timeout has exactly one sample: anything else means
    # the struct was not what the script assumed, and the printed percentiles are the safer numbers
    if responses - timeout <= sum(raw.values()) <= responses:
        run.histogram = raw


def undo_wrk_correction(hist: dict[int, int], duration_us: int, responses: int, connections: int) -> dict[int, int]:
    """Remove the samples wrk 4.x's ``stats_correct`` added to its latency histogram.

    Before reporting, wrk assumes each connection meant to send a request every
    ``expected = runtime / (responses / connections)`` microseconds and, for every sample
    ``n >= 2 * expected``, adds phantom samples at ``n - expected``, ``n - 2 * expected``, ...
    while they stay above ``expected`` (coordinated-omission correction). A closed loop has
    no such schedule, and the phantoms would count a slow answer several times, so they are
    taken out again: the bucket ``m > expected`` received one copy of every original sample at
    ``m + k * expected`` (k >= 1), so walking the buckets from the top, each residue class modulo
    ``expected`` carries the running sum of the originals above.
    """
    per_connection = responses // connections  # C's integer divisions, as in wrk.c
    if per_connection <= 0 or not hist:
        return dict(hist)
    expected = duration_us // per_connection
    if expected <= 0:
        return dict(hist)
    raw: dict[int, int] = {}
    above: dict[int, int] = {}  # residue modulo expected -> original samples in higher buckets
    for us in sorted(hist, reverse=True):
        residue = us % expected
        count = hist[us] - above.get(residue, 0) if us > expected else hist[us]
        if count > 0:
            raw[us] = count
        above[residue] = above.get(residue, 0) + max(count, 0)
    return raw


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
        except BaseException as exc:  # cancelled, or wrk hung: it must not outlive the slice
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
        cpu_before = cpu_seconds(proxy_pid), cpu_seconds(backend_pid)
        try:
            run = await run_wrk(self.path, url, self._scripts[scenario.stream], connections=scenario.concurrency,
                                threads=self.threads, seconds=seconds)
        except WrkFailed as exc:
            # a target that died mid-run costs its rows (as errors, like the Python generator's), not the run
            print(f"{result.target}: {exc}", file=sys.stderr, flush=True)
            result.errors += 1
            result.seconds += seconds
            return
        cpu_after = cpu_seconds(proxy_pid), cpu_seconds(backend_pid)
        ok = max(0, run.responses - run.status_errors)
        result.requests += ok
        result.errors += run.errors
        result.seconds += run.seconds
        result.bytes_read = (result.bytes_read or 0) + run.bytes_read
        if run.histogram is not None:
            for us, count in run.histogram.items():
                result.latencies.extend([us / 1e6] * count)
        else:
            result.round_percentiles.append((ok, run.percentiles))
        result.proxy_cpu = _add(result.proxy_cpu, cpu_before[0], cpu_after[0])
        result.backend_cpu = _add(result.backend_cpu, cpu_before[1], cpu_after[1])
        result.generator_cpu += run.cpu


async def check_answers(session: aiohttp.ClientSession, urls: dict[str, str], scenario: Scenario,
                        prompt_chars: int) -> list[str]:
    """One request per target through aiohttp, checked in full: wrk counts answers without reading them.

    Returns the targets whose answer was not a 200 (or, streaming, a stream ending in ``[DONE]``).
    """
    body = request_body(stream=scenario.stream, prompt_chars=prompt_chars)
    bad = []
    for name, url in urls.items():
        try:
            ok, _ = await asyncio.wait_for(_one(session, url, body, scenario.stream), REQUEST_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        if not ok:
            bad.append(name)
    return bad


async def wait_serving(session: aiohttp.ClientSession, name: str, url: str, body: bytes, timeout: float) -> None:
    """Poll ``url`` with a real request until it answers 200, so routers have their worker registered."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            async with session.post(url, data=body, headers=_HEADERS,
                                    timeout=aiohttp.ClientTimeout(total=2)) as resp:
                await resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} at {url} did not serve a request within {timeout:g}s (last: {last})")


async def run_scenario(load: PythonLoad | WrkLoad, urls: dict[str, str], scenario: Scenario, *,
                       duration: float, warmup: float, rounds: int, pids: dict[str, int],
                       say: Callable[[str], None]) -> dict[str, Result]:
    """Warm every target up, then measure it in ``rounds`` interleaved slices of duration/rounds."""
    outside = OutsideLoad(pids)
    names = list(urls)

    def result(name: str) -> Result:
        return Result(name, scenario.name, scenario.concurrency, scenario.stream, generator=load.name)

    results = {name: result(name) for name in names}
    if warmup > 0:
        for name in names:
            # warm-up lets each server reach steady state (and, with aiohttp, opens the keep-alive
            # connections); discarded
            await load.run_slice(urls[name], scenario, warmup, result(name))
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
            await load.run_slice(urls[name], scenario, duration / rounds, results[name],
                                 proxy_pid=pids.get(name), backend_pid=pids.get(MOCK))
    for name in names:
        r = results[name]
        # bytes per answer (wrk only) make a cut or different answer visible, which wrk does not report
        size = f", {r.bytes_read / r.requests:.0f} B/answer" if r.bytes_read is not None and r.requests else ""
        say(f"  {name:<14} {r.rps:9.0f} req/s  p50 {_fmt(_ms(r.latency(50)))} ms  "
            f"p99 {_fmt(_ms(r.latency(99)))} ms  errors {r.errors}  "
            f"cpu/req {_fmt(r.cpu_us(r.proxy_cpu), '.0f')} us (mock {_fmt(r.cpu_us(r.backend_cpu), '.0f')} us, "
            f"{load.name} {_fmt(r.cpu_us(r.generator_cpu), '.0f')} us{size})")
    load = outside.fractions()
    if load is not None:
        for r in results.values():
            r.outside_load, r.steal = load
        say(f"  outside load: others used {load[0]:.0%} of the machine's CPU, hypervisor steal {load[1]:.0%}"
            + (" (high: expect noisy numbers)" if load[0] + load[1] > NOISY_LOAD else ""))
    return results


# -- the report --------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def build_table(results: list[Result]) -> str:
    """The results table, with throughput vs the baseline and p50 added over direct."""
    by_key = {(r.target, r.scenario): r for r in results}
    header = ["target", "scenario", "req/s", "p50 ms", "p99 ms", "ttfb p50", "ttfb p99", "errors", "requests",
              "x baseline", "+p50 ms", "cpu us/req", "mock us/req"]
    rows = []
    for scenario in SCENARIOS:
        base = by_key.get((BASELINE, scenario.name))
        direct = by_key.get((DIRECT, scenario.name))
        for target in TARGET_ORDER:
            r = by_key.get((target, scenario.name))
            if r is None:
                continue
            p50 = r.latency(50)
            ratio = r.rps / base.rps if base is not None and base.rps > 0 else None
            direct_p50 = direct.latency(50) if direct is not None else None
            added = (p50 - direct_p50) * 1000 if p50 is not None and direct_p50 is not None else None
            rows.append([
                target, scenario.name, f"{r.rps:.0f}", _fmt(_ms(p50)), _fmt(_ms(r.latency(99))),
                _fmt(_ms(r.ttfb(50))), _fmt(_ms(r.ttfb(99))),
                str(r.errors), str(r.requests), _fmt(ratio, ".2f") + ("x" if ratio is not None else ""),
                "-" if target == DIRECT else _fmt(added, "+.3f"),
                _fmt(r.cpu_us(r.proxy_cpu), ".0f"), _fmt(r.cpu_us(r.backend_cpu), ".0f"),
            ])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    left = {0, 1}  # names left-aligned, numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "-" * len(line(header))
    out, last = [line(header), rule], None
    for row in rows:
        if last is not None and row[1] != last:
            out.append("")
        out.append(line(row))
        last = row[1]
    return "\n".join(out)


def target_checks(results: list[Result]) -> tuple[list[str], dict]:
    """The issue's two targets (and the peer comparison, when measured) as lines and as data."""
    by_key = {(r.target, r.scenario): r for r in results}

    def rps(target: str, scenario: str) -> float | None:
        r = by_key.get((target, scenario))
        return r.rps if r is not None and r.requests else None

    def p50(target: str, scenario: str) -> float | None:
        r = by_key.get((target, scenario))
        return r.latency(50) if r is not None else None

    def cpu_us(target: str, scenario: str) -> float | None:
        r = by_key.get((target, scenario))
        return r.cpu_us(r.proxy_cpu) if r is not None else None

    def path_cpu_us(target: str, scenario: str) -> float | None:
        # generator + proxy + mock: what one request costs the 2 cores that all of them share
        r = by_key.get((target, scenario))
        if r is None or r.proxy_cpu is None or r.backend_cpu is None:
            return None
        return r.cpu_us(r.proxy_cpu + r.backend_cpu + r.generator_cpu)

    lines, checks = [], {}
    fd, base = rps(FDROUTER, C64), rps(BASELINE, C64)
    ratio = fd / base if fd and base else None
    checks["throughput_ratio_c64"] = {"value": _round(ratio, 3), "target": 2.5, "ok": ratio is not None and ratio >= 2.5}
    lines.append(f"fdrouter/baseline throughput @c64: {_fmt(ratio, '.2f')}x (target >= 2.5x) "
                 f"{'PASS' if checks['throughput_ratio_c64']['ok'] else 'MISS'}")
    cpu = {t: cpu_us(t, C64) for t in (FDROUTER, BASELINE, SGLANG)}
    path = {t: path_cpu_us(t, C64) for t in (FDROUTER, BASELINE, SGLANG)}
    if cpu[FDROUTER] and cpu[BASELINE] and path[FDROUTER] and path[BASELINE]:
        # the same comparison in the unit that outside load disturbs least
        checks["cpu_us_per_request_c64"] = {t: _round(v, 1) for t, v in cpu.items() if v is not None}
        checks["path_cpu_us_per_request_c64"] = {t: _round(v, 1) for t, v in path.items() if v is not None}
        lines.append(f"  CPU per request @c64, baseline/fdrouter: proxy {cpu[BASELINE]:.0f}/{cpu[FDROUTER]:.0f} us"
                     f" = {cpu[BASELINE] / cpu[FDROUTER]:.2f}x; whole path (generator + proxy + mock)"
                     f" {path[BASELINE]:.0f}/{path[FDROUTER]:.0f} us = {path[BASELINE] / path[FDROUTER]:.2f}x"
                     + (f"; sglang-router proxy {cpu[SGLANG]:.0f} us" if cpu[SGLANG] else ""))
    fd_p50, direct_p50 = p50(FDROUTER, C1), p50(DIRECT, C1)
    added = (fd_p50 - direct_p50) * 1000 if fd_p50 is not None and direct_p50 is not None else None
    checks["added_p50_ms_c1"] = {"value": _round(added, 3), "target": 0.5, "ok": added is not None and added <= 0.5}
    lines.append(f"router-added p50 @c1: {_fmt(added, '.3f')} ms (target <= 0.5 ms) "
                 f"{'PASS' if checks['added_p50_ms_c1']['ok'] else 'MISS'}")
    if (SGLANG, C64) in by_key:
        peer = rps(SGLANG, C64)
        peer_ratio = fd / peer if fd and peer else None
        peer_p50 = p50(SGLANG, C1)
        peer_added = (peer_p50 - direct_p50) * 1000 if peer_p50 is not None and direct_p50 is not None else None
        checks["vs_sglang"] = {"throughput_ratio_c64": _round(peer_ratio, 3),
                               "sglang_added_p50_ms_c1": _round(peer_added, 3)}
        lines.append(f"fdrouter/sglang-router throughput @c64: {_fmt(peer_ratio, '.2f')}x "
                     f"(sglang-router-added p50 @c1: {_fmt(peer_added, '.3f')} ms; goal: match the peer)")
    return lines, checks


def environment() -> dict:
    """What the numbers depend on, printed above the table and stored in --json."""
    try:
        from fdrouter import jsonutil

        json_backend = jsonutil.BACKEND
    except ImportError:
        json_backend = "?"
    return {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": getattr(uvloop, "__version__", None),
        "fdrouter_json": json_backend,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


# -- main ------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, services: Services) -> dict:
    """Start everything, run every scenario on every target, print the table; returns the --json data."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loops
        # SIGTERM cancels the run like Ctrl-C does, so every finally (and main's stop_all) runs
        loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    env = environment()
    say = _printer()
    with_peer = not args.no_peer and _sglang_available()
    say(f"fdrouter bench: python {env['python']}, aiohttp {env['aiohttp']}, uvloop {env['uvloop'] or 'no'}, "
        f"fdrouter json {env['fdrouter_json']}, {env['cpus']} cpus; {args.duration:g}s per scenario in "
        f"{args.rounds} interleaved rounds after {args.warmup:g}s warm-up")
    if not with_peer:
        say("sglang-router: " + ("skipped (--no-peer)" if args.no_peer else
                                 "not installed (pip install sglang-router to measure it as a peer)"))
    urls = await start_targets(services, with_peer=with_peer)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)  # >= any concurrency: the pool never queues
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), auto_decompress=False,
        # no skip_auto_headers: with it aiohttp builds a CIMultiDict per request, a cost the generator need not pay
    ) as session:
        load: PythonLoad | WrkLoad
        if args.generator == "wrk":
            load = WrkLoad(args.wrk_path, args.wrk_threads, args.prompt_chars, services.workdir)
            env["wrk"], env["wrk_threads"] = load.version, args.wrk_threads
        else:
            load = PythonLoad(session, args.prompt_chars)
        env["generator"] = load.name
        say(f"load generator: {load.describe()}")
        probe = request_body(stream=False, prompt_chars=args.prompt_chars)
        for name, url in list(urls.items()):
            try:
                await wait_serving(session, name, url, probe, PEER_START_TIMEOUT if name == SGLANG else START_TIMEOUT)
            except RuntimeError as exc:
                if name != SGLANG:
                    raise
                # a peer that fails to start costs its rows, not the run
                log = next((p[2] for p in services.procs if p[0] == SGLANG), None)
                say(f"sglang-router: could not be measured: {exc}\n{Services.tail(log) if log else ''}")
                del urls[name]
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
                                       rounds=args.rounds, pids=services.pids, say=say)
            results.extend(found.values())
    print()
    print(f"load generator: {load.describe()}")
    print(build_table(results))
    if load.name == "wrk":
        print("ttfb: not measured by wrk (it sees only whole answers); --generator python measures it")
    print()
    lines, checks = target_checks(results)
    for text in lines:
        print(text)
    noisy = sorted({r.scenario for r in results if (r.outside_load or 0) + (r.steal or 0) > NOISY_LOAD})
    if noisy:
        print(f"note: other processes or the hypervisor took > {NOISY_LOAD:.0%} of the CPU during: "
              f"{', '.join(noisy)}; rerun when the machine is quieter before drawing conclusions")
    return {"environment": env, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "wrk_path")},
            "results": [r.summary() for r in results], "checks": checks}


def _printer() -> Callable[[str], None]:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    return say


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=None,
                        help="measured seconds per scenario and target (default 5; 1.5 with --quick)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="discarded warm-up seconds per scenario and target (default 1; 0.3 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds the duration is split into (default 5; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: numbers are noisier")
    parser.add_argument("--prompt-chars", type=int, default=1000, help="system prompt length (default 1000)")
    parser.add_argument("--no-peer", action="store_true", help="do not measure sglang-router even if installed")
    parser.add_argument("--generator", choices=GENERATORS, default="auto",
                        help="load generator: wrk (the C one; apt-get install wrk), python (aiohttp; the only one "
                             "with time to first byte) or auto: wrk when on PATH, else python (default auto)")
    parser.add_argument("--wrk-threads", type=int, default=WRK_THREADS,
                        help=f"wrk threads, capped at the concurrency (default {WRK_THREADS}: on 2 cores one "
                             "thread is far from saturated and a second only takes CPU from the servers)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; every subprocess is stopped on the way out, whatever happens."""
    args = _parser().parse_args(argv)
    quick = args.quick
    args.duration = args.duration if args.duration is not None else (1.5 if quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 1.0)
    args.rounds = max(1, args.rounds if args.rounds is not None else (3 if quick else 5))
    if args.duration <= 0 or args.warmup < 0:
        _parser().error("--duration must be > 0 and --warmup >= 0")
    if args.wrk_threads < 1:
        _parser().error("--wrk-threads must be >= 1")
    args.wrk_path = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and args.wrk_path is None:
        _parser().error("--generator wrk: no wrk on PATH (apt-get install wrk)")
    args.generator = "wrk" if args.wrk_path else "python"  # auto resolved, so --json records what ran
    services = Services()
    try:
        coro = bench(args, services)
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
        services.stop_all()
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
