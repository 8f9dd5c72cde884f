"""The servers measured, all in front of one mock backend with zero token delay, started as child processes.

- ``direct``: the mock backend itself, the floor every proxy adds to;
- ``fdrouter``: ``fdrouter serve`` with its defaults (one process, the lean front end, ``front.py``);
- ``fdrouter ×2 workers``: ``fdrouter serve --workers 2``: a supervisor and two worker processes
  sharing the port (its CPU is the sum over the process tree, ``proctree``);
- ``fdrouter (aiohttp front)``: the same router with ``--http-front aiohttp``, so every run
  re-measures what the lean front end saves over aiohttp's server;
- ``fdrouter (aiohttp client pool)``: the same router with aiohttp's ClientSession as its
  generation pool (``fdrouter_aiohttp_pool.py``), to re-check what the hand-written pool buys;
- ``baseline``: ``baseline_proxy.py``, FastDeploy's first router's per-request-session design;
- ``sglang-router``: the Rust peer, when ``sglang_router`` is importable. It delivers each
  stream on a keep-alive connection ~40 ms late (0.3.2, with either generator), so its
  streaming rows are bound by that timer rather than by CPU; with a new connection per request
  the delay is gone: the signature of Nagle's algorithm on its client sockets meeting the
  client's delayed ACK.
- ``vllm-router``: the second Rust peer (PyPI ``vllm-router``, a fork of sglang-router), when
  its ``vllm-router`` script is next to this interpreter or on PATH. At start-up it waits for
  the worker's ``GET /health`` (the mock answers 200) and then checks it every 60 s.

Processes go through ``fdrouter.testing.processes.Spawner``, each in its own session so a
Ctrl-C reaches only the benchmark, which then stops them in order.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import aiohttp

from fdrouter.testing.processes import ServiceProcess, Spawner

from .workload import ENDPOINT, HEADERS, HOST, OUTPUT_TOKENS

BENCHMARKS = Path(__file__).resolve().parents[1]
SERVE_TIMEOUT = 20.0  # seconds for a started router to serve its first request (its worker registered)
PEER_START_TIMEOUT = 60.0  # sglang-router discovers its worker in a background workflow

DIRECT, FDROUTER, FDROUTER_W2, AIOHTTP_FRONT, AIOHTTP_POOL, BASELINE, SGLANG, VLLM = (
    "direct", "fdrouter", "fdrouter ×2 workers", "fdrouter (aiohttp front)", "fdrouter (aiohttp client pool)",
    "baseline", "sglang-router", "vllm-router")
MOCK = "mock"
PEERS = (SGLANG, VLLM)
TARGET_ORDER = (DIRECT, FDROUTER, FDROUTER_W2, AIOHTTP_FRONT, AIOHTTP_POOL, BASELINE, SGLANG, VLLM)
"""The order of the rows in every scenario, and of the targets in a round before rotation."""


def sglang_available() -> bool:
    """Whether sglang-router can be run as a peer here."""
    try:
        return importlib.util.find_spec("sglang_router") is not None
    except (ImportError, ValueError):
        return False


def vllm_router_path() -> str | None:
    """The ``vllm-router`` script: next to this interpreter (the venv's bin), else on PATH; None if neither."""
    here = os.path.dirname(sys.executable)
    return shutil.which("vllm-router", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


def available_peers() -> dict[str, bool]:
    """Which Rust peers can run here."""
    return {SGLANG: sglang_available(), VLLM: vllm_router_path() is not None}


async def start_targets(spawner: Spawner, *, peers: tuple[str, ...]) -> dict[str, ServiceProcess]:
    """Start the mock backend and every proxy in front of it; name -> process (``direct`` is the mock).

    ``peers`` are the Rust peers to start too. Raises RuntimeError if one of fdrouter's own servers
    does not start; a peer that does not start is left out (and its log printed), it costs its rows,
    not the run.
    """
    py = sys.executable
    mock = await spawner.start(MOCK, [
        py, "-m", "fdrouter.testing.mock_backend", "--port", "0", "--role", "mixed",
        "--output-tokens", str(OUTPUT_TOKENS), "--token-delay", "0",
    ], own_session=True)
    router_flags = ["--port", "0", "--worker-urls", mock.url, "--log-level", "warning"]
    commands = {
        FDROUTER: [py, "-m", "fdrouter", "serve", *router_flags],
        FDROUTER_W2: [py, "-m", "fdrouter", "serve", *router_flags, "--workers", "2"],
        AIOHTTP_FRONT: [py, "-m", "fdrouter", "serve", *router_flags, "--http-front", "aiohttp"],
        AIOHTTP_POOL: [py, str(BENCHMARKS / "fdrouter_aiohttp_pool.py"), *router_flags],
        BASELINE: [py, str(BENCHMARKS / "baseline_proxy.py"), "--port", "0", "--backend", mock.url],
    }
    try:
        async with asyncio.TaskGroup() as group:  # one failing start cancels the others
            tasks = {name: group.create_task(spawner.start(name, argv, own_session=True))
                     for name, argv in commands.items()}
    except ExceptionGroup as failed:  # the first start that failed says why
        raise failed.exceptions[0] from None
    started = {DIRECT: mock, MOCK: mock, **{name: task.result() for name, task in tasks.items()}}
    starters = {SGLANG: start_sglang, VLLM: start_vllm}
    for peer in peers:
        try:
            started[peer] = await starters[peer](spawner, mock.url)
        except RuntimeError as exc:
            print(f"{peer}: could not be started: {exc}", flush=True)
    return started


async def start_sglang(spawner: Spawner, backend: str, name: str = SGLANG) -> ServiceProcess:
    """sglang-router (round_robin) in front of ``backend``, announced by ``announce_listening.py``."""
    # It cannot report a port it picked itself, so it gets ports held by closed_port: Rust's listeners
    # set SO_REUSEADDR on Unix (std's TcpListener::bind does), which such a port lets through.
    # round_robin: the cheapest policy, like fdrouter's default request_num with one instance. Its
    # Prometheus exporter defaults to 0.0.0.0:29000, which could clash or expose: pinned to a held
    # loopback port.
    port, metrics_port = spawner.hold_port(), spawner.hold_port()
    url = f"http://{HOST}:{port}"
    return await spawner.start(name, [
        sys.executable, str(BENCHMARKS / "announce_listening.py"), "--name", name, "--url", url,
        "--timeout", str(PEER_START_TIMEOUT), "--",
        sys.executable, "-m", "sglang_router.launch_router", "--host", HOST, "--port", str(port),
        "--worker-urls", backend, "--policy", "round_robin", "--log-level", "warn",
        "--prometheus-host", HOST, "--prometheus-port", str(metrics_port),
    ], timeout=PEER_START_TIMEOUT, own_session=True)


async def start_vllm(spawner: Spawner, backend: str, name: str = VLLM) -> ServiceProcess:
    """vllm-router (round_robin) in front of ``backend``, announced by ``announce_listening.py``.

    As sglang-router (which it forked from): ports held by closed_port, its Prometheus exporter
    (default 127.0.0.1:29000) pinned to a held port, round_robin. Its admission limit (32,768
    concurrent requests by default) is above anything measured here.
    """
    path = vllm_router_path()
    if path is None:
        raise RuntimeError("vllm-router is not installed")
    port, metrics_port = spawner.hold_port(), spawner.hold_port()
    url = f"http://{HOST}:{port}"
    return await spawner.start(name, [
        sys.executable, str(BENCHMARKS / "announce_listening.py"), "--name", name, "--url", url,
        "--timeout", str(PEER_START_TIMEOUT), "--",
        path, "--host", HOST, "--port", str(port), "--worker-urls", backend, "--policy", "round_robin",
        "--log-level", "warning", "--prometheus-host", HOST, "--prometheus-port", str(metrics_port),
    ], timeout=PEER_START_TIMEOUT, own_session=True)


def generation_urls(started: dict[str, ServiceProcess]) -> dict[str, str]:
    """Target name -> the URL the load goes to, in ``TARGET_ORDER``."""
    return {name: started[name].url.rstrip("/") + ENDPOINT for name in TARGET_ORDER if name in started}


def target_pids(started: dict[str, ServiceProcess]) -> dict[str, int]:
    """Process ids whose CPU time is read: every proxy and the mock (``direct`` has no proxy)."""
    return {name: proc.pid for name, proc in started.items() if name != DIRECT}


async def wait_serving(session: aiohttp.ClientSession, name: str, url: str, body: bytes, timeout: float, *,
                       each: float = 2.0) -> None:
    """Poll ``url`` with a real request (``each`` seconds at most) until it answers 200, so routers have their
    worker registered."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            async with session.post(url, data=body, headers=HEADERS,
                                    timeout=aiohttp.ClientTimeout(total=each)) as resp:
                await resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} at {url} did not serve a request within {timeout:g}s (last: {last})")


__all__ = ["AIOHTTP_FRONT", "AIOHTTP_POOL", "BASELINE", "BENCHMARKS", "DIRECT", "FDROUTER", "FDROUTER_W2", "MOCK",
           "PEERS", "PEER_START_TIMEOUT", "SERVE_TIMEOUT", "SGLANG", "TARGET_ORDER", "VLLM", "available_peers",
           "generation_urls", "sglang_available", "start_sglang", "start_targets", "start_vllm", "target_pids",
           "vllm_router_path", "wait_serving"]
