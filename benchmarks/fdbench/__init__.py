"""The router benchmark's parts; ``benchmarks/bench_router.py`` is the entry point and explains the numbers.

- ``workload``: the scenarios and the one request body each sends;
- ``targets``: the servers measured (direct, fdrouter, fdrouter with aiohttp's client pool,
  the baseline proxy, sglang-router when importable), started through ``fdrouter.testing.processes``;
- ``python_load``, ``wrk``: the two closed-loop load generators; ``wrk_output`` parses wrk's report;
- ``latency``: percentiles, and undoing wrk's coordinated-omission correction;
- ``cpu``: CPU time of processes and of the whole machine, from /proc;
- ``results``: what one target did in one scenario, pooled over the rounds;
- ``runner``: one scenario on every target, in interleaved rounds;
- ``report``: the table and the goal checks; ``cli``: flags and the run as a whole;
- ``aiohttp_pool``: aiohttp's ClientSession behind the router's generation-pool interface.
"""

from __future__ import annotations

__all__: list[str] = []
