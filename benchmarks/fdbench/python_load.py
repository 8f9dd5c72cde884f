"""The Python/aiohttp load generator: one keep-alive session, one task per concurrent request.

It measures time to first byte, which wrk cannot, but spends about as much CPU per request as
the routers under test (see ``wrk``'s docstring), so its ratios are compressed toward 1.
``one_request`` also serves the runner's answer checks and readiness polls.
"""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp

from .proctree import tree_cpus
from .results import Result
from .workload import HEADERS, REQUEST_TIMEOUT, Scenario, request_body

_DONE = b"data: [DONE]\n\n"


async def one_request(session: aiohttp.ClientSession, url: str, body: bytes,
                      stream: bool) -> tuple[bool, float | None]:
    """One request; returns (ok, seconds to the first body byte or None).

    ok means status 200 and, streaming, a stream that ends in ``[DONE]``.
    """
    start = time.perf_counter()
    async with session.post(url, data=body, headers=HEADERS) as resp:
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
            ok, ttfb = await one_request(session, url, body, stream)
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
        cpu_before, own_before = tree_cpus(proxy_pid, backend_pid), time.process_time()
        start = time.perf_counter()
        # requests time out after REQUEST_TIMEOUT, so this bound is never the one that ends a healthy slice
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT + 5), asyncio.TaskGroup() as group:
            for _ in range(scenario.concurrency):
                group.create_task(_worker(session, url, body, scenario.stream, start + seconds, result, ends))
        cpu_after, own_after = tree_cpus(proxy_pid, backend_pid), time.process_time()
    finally:
        gc.enable()
    # measured time runs to the last completion: requests started before the deadline count in full
    result.seconds += (max(ends) if ends else time.perf_counter()) - start
    result.add_server_cpu((cpu_before[0], cpu_after[0]), (cpu_before[1], cpu_after[1]))
    result.generator_cpu += own_after - own_before


class PythonLoad:
    """The closed-loop Python/aiohttp generator (see the module docstring)."""

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


def client_session() -> aiohttp.ClientSession:
    """The generator's session: no connection limit (it never queues), bounded per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), auto_decompress=False,
        # no skip_auto_headers: with it aiohttp builds a CIMultiDict per request, a cost the generator need not pay
    )


__all__ = ["PythonLoad", "client_session", "one_request", "run_slice"]
