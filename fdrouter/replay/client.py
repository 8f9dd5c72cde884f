"""The open-loop client: each request of a trace sent at its (scaled) arrival time, however the server keeps up.

Each request is a streaming ``POST /v1/completions`` with ``max_tokens`` set to its output
length, ``stream_options.include_usage`` (for the cached tokens), ``user`` set to its session
when it has one, and an ``X-Request-Id`` of ``replay-<id>``. The prompt text is built when
the request is sent (a Mooncake trace's ``BlockRequest.prompt``: equal block ids, equal text),
never for the whole trace at once.

Bounded: every request has a total timeout (connect to last byte); at most ``max_in_flight``
are open (a request due while the limit is reached waits, and its lateness is reported);
setting ``stop`` ends the replay at once: nothing more is sent and open requests are
cancelled (their outcome says ``cancelled``), and the session is closed before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..sim.block_requests import BlockRequest
from ..sim.workloads import Request
from .outcome import Outcome, StreamState, summarize

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "DEFAULT_TIMEOUT_SECS", "ReplayRun", "replay", "request_body"]

DEFAULT_TIMEOUT_SECS = 600.0
DEFAULT_MAX_IN_FLIGHT = 512
_START_DELAY_S = 0.05  # the first request is due this long after the session is ready


@dataclass
class ReplayRun:
    """The outcomes of a replay, in sending order, and how long it took."""

    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    stopped: bool = False
    """True when ``stop`` ended it before every request was answered."""

    @property
    def summary(self) -> dict[str, Any]:
        """``outcome.summarize`` of the run, plus ``stopped``."""
        return {**summarize(self.outcomes, self.wall_s), "stopped": self.stopped}


def request_body(request: Request | BlockRequest, *, model: str | None = None, ignore_eos: bool = False) -> dict:
    """The JSON body replaying ``request`` (``ignore_eos`` asks vLLM/FastDeploy for exactly ``max_tokens``)."""
    body: dict[str, Any] = {
        "prompt": request.prompt, "max_tokens": request.output_tokens, "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model is not None:
        body["model"] = model
    if request.session is not None:
        body["user"] = request.session
    if ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = request.output_tokens
    return body


async def _unless_stopped(awaitable: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await ``awaitable`` unless ``stop`` is set first; True when it completed."""
    if stop.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        return False
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    return work.done() and not work.cancelled() and work.exception() is None


async def _send(session: aiohttp.ClientSession, url: str, body: dict, headers: dict[str, str],
                outcome: Outcome, due: float) -> None:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    outcome.late = max(0.0, sent - due)
    state = StreamState()
    try:
        async with session.post(url, json=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                outcome.error, outcome.e2e = f"http_{response.status}", loop.time() - sent
                return
            async for line in response.content:
                state.feed(line, loop.time())
        state.apply(outcome, sent, loop.time())
    except TimeoutError:
        outcome.error = "timeout"
    except (aiohttp.ClientError, ConnectionError, ValueError):  # ValueError: an over-long SSE line
        outcome.error = "connection"
    except asyncio.CancelledError:
        outcome.error = "cancelled"
        raise


async def replay(
    requests: Iterable[Request | BlockRequest], url: str, *, speedup: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_SECS, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, model: str | None = None,
    ignore_eos: bool = False, api_key: str | None = None, stop: asyncio.Event | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> ReplayRun:
    """Send ``requests`` (in arrival order) to the router at ``url``, each at ``arrival / speedup``
    after the first one's (which is sent at once: a slice of a trace starts without waiting).

    ``on_done`` is called with each outcome as its request ends. Returns when every request
    has ended, or at once when ``stop`` is set (then ``stopped`` is True).
    """
    if not speedup > 0 or not timeout > 0 or max_in_flight < 1:
        raise ValueError("speedup and timeout must be > 0 and max_in_flight >= 1")
    stop = stop or asyncio.Event()
    endpoint = url.rstrip("/") + "/v1/completions"
    loop = asyncio.get_running_loop()
    run = ReplayRun()
    limit = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        start = loop.time() + _START_DELAY_S

        def finished(task: asyncio.Task[None], outcome: Outcome) -> None:
            tasks.discard(task)
            limit.release()
            if on_done is not None and not task.cancelled():
                on_done(outcome)

        origin: float | None = None  # the first request's arrival: a slice of a trace starts at once
        try:
            for request in requests:
                if origin is None:
                    origin = request.arrival
                due = start + (request.arrival - origin) / speedup
                delay = due - loop.time()
                if delay > 0 and not await _unless_stopped(asyncio.sleep(delay), stop):
                    break
                if not await _unless_stopped(limit.acquire(), stop):
                    break
                headers = {"X-Request-Id": f"replay-{request.id}"}
                if api_key:
                    headers["Authorization"] = f"Bearer {api_key}"
                outcome = Outcome(request.id, (request.arrival - origin) / speedup)
                run.outcomes.append(outcome)
                body = request_body(request, model=model, ignore_eos=ignore_eos)
                task = asyncio.ensure_future(_send(session, endpoint, body, headers, outcome, due))
                tasks.add(task)
                task.add_done_callback(functools.partial(finished, outcome=outcome))
            while tasks and not stop.is_set():
                await _unless_stopped(asyncio.wait(set(tasks)), stop)
        finally:
            run.stopped = stop.is_set() and (bool(tasks) or len(run.outcomes) < _length(requests))
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks), timeout=5.0)  # cancelled sends unwind at once
    run.wall_s = time.perf_counter() - started
    return run


def _length(requests: Iterable[object]) -> float:
    try:
        return len(requests)  # type: ignore[arg-type]
    except TypeError:
        return float("inf")
