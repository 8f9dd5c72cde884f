"""Retries happen only before the first byte: a backend process killed mid-stream is not retried."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from fdrouter.testing import MockBehavior

from .conftest import expected_text, is_openai_error, kill_now, stream_text

TOKENS = 400  # 20 s at 0.05 s per token: the kill after the third event surely comes mid-stream


async def test_a_backend_killed_mid_stream_gives_the_chunks_so_far_then_an_error_event_and_no_retry(
    spawn, router_factory, mock_backend_factory
):
    victim = await spawn.backend("--output-tokens", str(TOKENS), "--token-delay", "0.05")
    bystander = await mock_backend_factory(behavior=MockBehavior(output_tokens=TOKENS))
    server = await router_factory(retry_initial_backoff_secs=0.001, retry_max_backoff_secs=0.01)
    events: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def register(port: int) -> None:
            body = {"role": "mixed", "host_ip": "127.0.0.1", "port": port}
            async with http.post(server.url + "/register", json=body) as resp:
                assert resp.status == 200, await resp.text()

        await register(victim.port)  # alone, so the stream surely goes to it
        payload = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.post(server.url + "/v1/chat/completions", json=payload) as resp:
            assert resp.status == 200
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                events.append(line[5:].strip().decode())
                if len(events) == 3:
                    # a healthy instance is there to retry on, if the router (wrongly) did so
                    await register(bystander.port)
                    kill_now(victim)
            # the loop ends when the router ends the stream; a hang would hit the 60 s timeout

    assert await victim.wait(5) == -9
    assert len(events) >= 4, events
    assert "[DONE]" not in events
    assert stream_text(events[:-1]) and expected_text(TOKENS).startswith(stream_text(events[:-1]))
    last = json.loads(events[-1])
    assert is_openai_error(last) and last["error"]["code"] == "upstream_error", last
    await asyncio.sleep(0.3)  # a window for a wrong retry to land on the bystander
    assert bystander.requests_total == 0, "the request was sent to a second instance after bytes were relayed"
