"""Router overhead benchmark on loopback: direct vs fdrouter vs the per-request-session baseline.

    python benchmarks/bench_router.py [--generator {auto,wrk,python}] [--duration S] [--quick]
                                      [--streams N] [--no-peer] [--json FILE]

docs/benchmarks.md explains every row, scenario and target; this is the short version.

One run starts a mock backend (zero token delay) and, in front of it: fdrouter; fdrouter with
two workers (``--workers 2``); fdrouter with aiohttp's server as its front end (``--http-front
aiohttp``) instead of the lean one; fdrouter with aiohttp's ClientSession as its generation pool
instead of its hand-written one; the baseline proxy (``baseline_proxy.py``: FastDeploy's first
router's design, a new session and so a new connection per request); and, when installed, the
Rust peers sglang-router and vllm-router. It drives each with a closed-loop load generator (N
connections, each sending its next request when the previous answer is complete) in three scenarios:

- non-streaming at concurrency 1: the latency a router adds to one request;
- non-streaming at concurrency 64: throughput;
- streaming at concurrency 32: full-stream latency (and time to first byte with the Python generator).

This is a benchmark, not a test: it passes or fails nothing, it reports. The table gives, per
target and scenario, requests/s, p50/p99 latency, errors, and:

- ``x baseline``: the row's requests/s divided by the baseline's in the same scenario: the
  throughput gained over a proxy that connects anew for every request;
- ``+p50 ms``: the row's p50 minus direct's p50 in the same scenario: the latency the proxy adds;
- ``cpu us/req`` and ``mock us/req``: CPU time (user + system, from /proc) of the proxy (summed
  over its process tree: a supervisor and its workers) and of the mock backend per answered request. They move much less with outside load than
  requests/s do, and show what a per-request connection costs the backend too.

Below the table, the checks (PASS/MISS), each a ratio of two rows of this one run:

- ``fdrouter/baseline throughput @c64``: goal >= 2.5x (a minimal proxy measured ~2.6x for a shared
  session over a per-request one with a minimal proxy); with the same comparison in CPU per
  request, for the proxy alone and for the whole path (generator + proxy + mock);
- ``router-added p50 @c1``: fdrouter's p50 minus direct's, goal <= 0.5 ms;
- ``generation pool, Http1Pool over aiohttp's ClientSession``: fdrouter's throughput over the
  aiohttp-pool router's, and the aiohttp-pool router's proxy CPU per request over fdrouter's;
  PASS while the hand-written pool saves at least 10% proxy CPU per request (geometric mean of
  c64 and stream c32), so the reason it exists is re-measured on every run, not remembered;
- ``front end, lean/aiohttp``: fdrouter's proxy CPU per request and router-added p50 with each front end
  (a report, no goal);
- ``fdrouter/sglang-router throughput @c64`` (when the peer ran): above 1 is faster than the peer.

Then the memory scenario (``--streams N``, default 8,000; 0 skips it): N concurrent 16 s streams
through ``fdrouter serve --workers 1`` and vllm-router, completed streams and router RSS per
stream. Last, the targets block: each target of the ``--workers`` / leaner-hot-path issue with
this run's figures and met / NOT met (a report: the exit status does not depend on it).

The numbers are this machine's: the generator, the proxies and the mock share its cores.

Load generator: ``wrk`` (``apt-get install wrk``) when it is on PATH, else a Python/aiohttp one.
The generator must cost much less CPU per request than a proxy: the Python one spends about as
much as a router does, which pulls every proxy's throughput toward the same whole-path figure
and compresses the ratios toward 1; wrk spends a fraction of that. wrk cannot see the first
byte of an answer, so its tables have no time to first byte (``--generator python`` measures
it). wrk's latency percentiles come from its full histogram, read by the Lua ``done()`` hook,
with wrk's coordinated-omission correction undone: a closed loop has no schedule to omit, and
the raw samples pool across rounds exactly like the Python generator's.

Noise: other people's jobs may share the machine. Each scenario is measured in several short
rounds with the targets interleaved (rotating order), so a burst of outside load hits every
target alike; the CPU others used is measured and a scenario where they took more than 10% of
the machine is flagged.

The parts live in ``fdbench/`` (see its ``__init__``); this file is the entry point ``make bench`` runs.
"""

from __future__ import annotations

import sys

try:  # the benchmark drives the installed project: say how to get it, not a traceback
    import aiohttp  # noqa: F401

    import fdrouter  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/test_extras.py
    sys.exit(f"bench_router: error: {exc.name or exc} is not installed; run `make bench` "
             "(or `pip install -e '.[speed]'` first)")

from fdbench.cli import main  # benchmarks/ is sys.path[0] when this file runs as a script

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
