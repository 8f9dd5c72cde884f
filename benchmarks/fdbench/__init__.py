"""The router benchmark's parts; ``benchmarks/bench_router.py`` is the entry point and explains the numbers.

- ``workload``: the scenarios and the one request body each sends;
- ``targets``: the servers measured (direct, fdrouter with one and two workers, fdrouter with
  aiohttp's front end and client pool, the baseline proxy, sglang-router and vllm-router when
  installed), started through ``fdrouter.testing.processes``;
- ``python_load``, ``wrk``: the two closed-loop load generators; ``wrk_output`` parses wrk's report;
- ``latency``: percentiles, and undoing wrk's coordinated-omission correction;
- ``cpu``: CPU time of processes and of the whole machine, from /proc; ``proctree``: CPU time and
  RSS summed over a process and its descendants (a supervisor and its workers);
- ``streams``: the memory scenario (thousands of concurrent slow streams, RSS per stream);
- ``goals``: the targets block, each target of the ``--workers`` / leaner-hot-path issue judged;
- ``results``: what one target did in one scenario, pooled over the rounds;
- ``runner``: one scenario on every target, in interleaved rounds;
- ``report``: the table and the goal checks; ``cli``: flags and the run as a whole;
- ``aiohttp_pool``: aiohttp's ClientSession behind the router's generation-pool interface.
"""

from __future__ import annotations

__all__: list[str] = []
