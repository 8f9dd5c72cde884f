"""One scenario on every target: a warm-up each, then short measured rounds with the targets interleaved.

Generator and servers share the machine's cores, and so may other people's jobs. Each
scenario is therefore measured in several short rounds with the targets in rotating order,
so a burst of outside load hits every target alike instead of one; each target's rounds are
pooled into one ``Result``. The CPU others used meanwhile is measured and reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from .cpu import OutsideLoad
from .python_load import PythonLoad, one_request
from .report import fmt
from .results import Result, ms
from .targets import MOCK
from .workload import REQUEST_TIMEOUT, Scenario, request_body
from .wrk import WrkLoad

NOISY_LOAD = 0.10  # others' CPU + steal above 10% of the machine: the scenario's ratios are suspect

Load = PythonLoad | WrkLoad


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """The order of the targets in each round: round i starts with the i-th target."""
    if not names:
        return [[] for _ in range(rounds)]
    return [names[i % len(names):] + names[:i % len(names)] for i in range(rounds)]


async def run_scenario(load: Load, urls: dict[str, str], scenario: Scenario, *,
                       duration: float, warmup: float, rounds: int, pids: dict[str, int],
                       say: Callable[[str], None]) -> dict[str, Result]:
    """Warm every target up, then measure it in ``rounds`` interleaved rounds of duration/rounds."""
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
    for order in rotations(names, rounds):
        for name in order:
            await load.run_slice(urls[name], scenario, duration / rounds, results[name],
                                 proxy_pid=pids.get(name), backend_pid=pids.get(MOCK))
    width = max(map(len, names), default=0)
    for name in names:
        r = results[name]
        # bytes per answer (wrk only) make a cut or different answer visible, which wrk does not report
        size = f", {r.bytes_read / r.requests:.0f} B/answer" if r.bytes_read is not None and r.requests else ""
        say(f"  {name:<{width}} {r.rps:9.0f} req/s  p50 {fmt(ms(r.latency(50)))} ms  "
            f"p99 {fmt(ms(r.latency(99)))} ms  errors {r.errors}  "
            f"cpu/req {fmt(r.cpu_us(r.proxy_cpu), '.0f')} us (mock {fmt(r.cpu_us(r.backend_cpu), '.0f')} us, "
            f"{load.name} {fmt(r.cpu_us(r.generator_cpu), '.0f')} us{size})")
    fractions = outside.fractions()
    if fractions is not None:
        for r in results.values():
            r.outside_load, r.steal = fractions
        say(f"  outside load: others used {fractions[0]:.0%} of the machine's CPU, hypervisor steal "
            f"{fractions[1]:.0%}" + (" (high: expect noisy numbers)" if sum(fractions) > NOISY_LOAD else ""))
    return results


async def check_answers(session: aiohttp.ClientSession, urls: dict[str, str], scenario: Scenario,
                        prompt_chars: int) -> list[str]:
    """One request per target through aiohttp, checked in full: wrk counts answers without reading them.

    Returns the targets whose answer was not a 200 (or, streaming, a stream ending in ``[DONE]``).
    """
    body = request_body(stream=scenario.stream, prompt_chars=prompt_chars)
    bad = []
    for name, url in urls.items():
        try:
            ok, _ = await asyncio.wait_for(one_request(session, url, body, scenario.stream), REQUEST_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        if not ok:
            bad.append(name)
    return bad


__all__ = ["NOISY_LOAD", "Load", "check_answers", "rotations", "run_scenario"]
