"""Graceful drain of ``fdrouter serve`` on SIGTERM, the grace period's cut-off, and re-registration after a restart."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from fdrouter.registration import keep_registered
from fdrouter.testing import MockBehavior

from .conftest import poll

STREAMS = 20


async def _stream(http: aiohttp.ClientSession, url: str, first: asyncio.Event, started: list) -> dict:
    """One streaming request: sets ``first`` once its first chunk is in; returns how it ended."""
    payload = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    events: list[bytes] = []
    try:
        async with http.post(url + "/v1/chat/completions", json=payload) as resp:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    events.append(line[5:].strip())
                    if len(events) == 1:
                        started.append(1)
                        first.set()
        end = "done" if events and events[-1] == b"[DONE]" else "truncated"
    except aiohttp.ClientError as exc:
        end = f"cut:{type(exc).__name__}"
    return {"end": end, "chunks": len(events), "at": time.monotonic(), "last": events[-1] if events else None}


async def _all_started(http, url: str, n: int) -> tuple[list[asyncio.Task], list]:
    started: list = []
    first = asyncio.Event()
    tasks = [asyncio.create_task(_stream(http, url, first, started)) for _ in range(n)]
    deadline = time.monotonic() + 20
    while len(started) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(started) == n, f"only {len(started)} of {n} streams got a first chunk"
    return tasks, started


async def _refused(port: int) -> bool:
    """True if a TCP connection to the port is refused (ECONNREFUSED): nothing listens any more.

    An accepted connection is closed again and counts as not refused; so does a reset, which is
    a connection that raced with the listener closing. The spawner holds the router's port, so
    no other process can be listening there instead.
    """
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    writer.close()
    return False


@pytest.mark.once
async def test_sigterm_lets_running_streams_finish_refuses_new_connections_and_exits_zero(spawn, mock_backend_factory):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=30, token_delay=0.1))  # 3 s streams
    grace = 15.0
    router = await spawn.router("--worker-urls", backend.url, "--shutdown-grace-period-secs", str(grace))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        tasks, _ = await _all_started(http, router.url, STREAMS)
        sigterm_at = time.monotonic()
        router.signal(signal.SIGTERM)
        # the listener closes at once; the streams go on
        assert await poll(lambda: _refused(router.port), timeout=5, interval=0.02), \
            "the router still accepted connections 5 s after SIGTERM"
        refused_at = time.monotonic()
        still_running = sum(not t.done() for t in tasks)
        results = await asyncio.gather(*tasks)
        code = await router.wait(grace + 5)
        exited_at = time.monotonic()
    last_done = max(r["at"] for r in results)
    print(f"\ndrain: SIGTERM -> connections refused {refused_at - sigterm_at:.2f}s ({still_running} of {STREAMS} "
          f"streams still running), last stream done {last_done - sigterm_at:.2f}s, exit {code} after "
          f"{exited_at - sigterm_at:.2f}s (grace {grace:g}s)")
    assert still_running >= 1, "connections were refused only after the streams ended: no drain was observed"
    assert [r["end"] for r in results] == ["done"] * STREAMS, results
    assert code == 0, router.log_text()
    assert exited_at - sigterm_at < grace
    assert exited_at - last_done < 5, "the router idled out its grace period after the streams were done"
    assert backend.disconnects == 0


@pytest.mark.once
async def test_streams_still_running_when_the_grace_period_ends_get_an_error_event_and_their_upstream_closed(
    spawn, mock_backend_factory
):
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=400, token_delay=0.05))  # 20 s
    grace = 0.5
    router = await spawn.router("--worker-urls", backend.url, "--shutdown-grace-period-secs", str(grace))
    n = 5
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        tasks, _ = await _all_started(http, router.url, n)
        sigterm_at = time.monotonic()
        router.signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 15)
        cut_at = max(r["at"] for r in results)
        code = await router.wait(10)
        exited_at = time.monotonic()
    closed = await backend.wait_for(lambda b: b.disconnects == n and b.requests_in_flight == 0, timeout=5)
    print(f"\ndrain cut: grace {grace:g}s, streams ended {cut_at - sigterm_at:.2f}s after SIGTERM as "
          f"{sorted({r['end'] for r in results})} (last event {results[0]['last']!r}), backend saw "
          f"{backend.disconnects} disconnect(s), exit {code} after {exited_at - sigterm_at:.2f}s")
    # each cut stream ends with an error event saying why, not with a bare broken connection
    assert all(r["end"] == "truncated" and b"router_shutting_down" in r["last"] for r in results), results
    assert closed, f"backend saw {backend.disconnects} of {n} disconnects, {backend.requests_in_flight} still running"
    assert code == 0, router.log_text()
    assert exited_at - sigterm_at < grace + 8


async def test_keep_registered_registers_again_with_a_restarted_router_on_the_same_port(spawn, mock_backend_factory):
    backend = await mock_backend_factory()
    port = spawn.hold_port()  # nobody else can take it while the router is down
    router = await spawn.router("--port", str(port))
    url = f"http://127.0.0.1:{port}"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:

        async def listed() -> bool:
            try:
                async with http.get(url + "/registered") as resp:
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError):
                return False
            return any(i["url"] == backend.url for i in body["instances"])

        task = asyncio.create_task(keep_registered(url, backend.register_info(), interval_secs=0.2,
                                                   retries=0, timeout_secs=1.0))
        try:
            assert await poll(listed, timeout=10), "never registered with the first router"
            router.kill()
            assert await router.wait(5) == -signal.SIGKILL
            await asyncio.sleep(0.5)  # a few failed rounds against the dead port: a window to end wrongly
            assert not task.done(), "keep_registered ended while the router was down"
            restarted = await spawn.router("--port", str(port))
            restarted_at = time.monotonic()
            # it re-registers every 0.2 s: 15 s leaves a loaded machine room for many rounds
            assert await poll(listed, timeout=15), "not registered with the restarted router within 15 s"
            print(f"\nkeep_registered: listed by the restarted router {time.monotonic() - restarted_at:.2f}s "
                  "after it printed its URL")
            assert restarted.process.returncode is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
