"""What the rig's tests share: request bodies, SSE parsing, timed streams, engine models, ports."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp

from fdrouter.sim.engine_model import EngineModel
from fdrouter.testing import MockBackend

__all__ = [
    "CHAT", "COMPLETIONS", "cached_tokens", "chat_body", "connection_refused", "fast_engine", "long_text",
    "metrics", "post_json", "read_events_until_broken", "sse_events", "stream_timed",
]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def chat_body(**extra: Any) -> dict[str, Any]:
    """A one-message chat request, with `extra` fields."""
    return {"model": "mock-model", "messages": [{"role": "user", "content": "hello"}], **extra}


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body, checking the framing on the way."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: "), block
        events.append(block[len("data: ") :])
    return events


async def read_events_until_broken(
    response: aiohttp.ClientResponse,
) -> tuple[list[str], BaseException | None]:
    """Read `data:` lines until the stream ends or breaks; return them and the error, if any."""
    events: list[str] = []
    try:
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(line[len(b"data: ") :].decode().rstrip("\n"))
    except aiohttp.ClientError as exc:
        return events, exc
    return events, None


def long_text(seed: str, chars: int = 1000) -> str:
    """`chars` characters that share no 64-character block with another seed's."""
    pieces = (f"{seed}{i:05d} " for i in range(chars))
    return "".join(pieces)[:chars]


def fast_engine(**fields: Any) -> EngineModel:
    """An engine model that takes no time unless told otherwise."""
    zero = {"prefill_base_s": 0.0, "prefill_per_token_s": 0.0, "decode_base_s": 0.0, "decode_per_seq_s": 0.0}
    return EngineModel(**{**zero, **fields})


def cached_tokens(answer: dict[str, Any]) -> int:
    """``usage.prompt_tokens_details.cached_tokens`` of an answer or a last chunk."""
    return answer["usage"]["prompt_tokens_details"]["cached_tokens"]


async def post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body`, expect 200, return the JSON answer."""
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def stream_timed(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float, float, list[dict[str, Any]]]:
    """Stream with usage; (seconds to the first token chunk, seconds to [DONE], the JSON chunks)."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = None
    chunks = []
    async with session.post(url, json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {"):
                first = loop.time() - started if first is None else first
                chunks.append(json.loads(line[len(b"data: ") :]))
    assert first is not None
    return first, loop.time() - started, chunks


async def metrics(session: aiohttp.ClientSession, backend: MockBackend) -> tuple[int, int]:
    """(fastdeploy:num_requests_running, fastdeploy:num_requests_waiting) as /metrics reports them."""
    async with session.get(backend.url + "/metrics") as response:
        values = dict(
            line.split() for line in (await response.text()).splitlines() if not line.startswith("#")
        )
    return int(values["fastdeploy:num_requests_running"]), int(values["fastdeploy:num_requests_waiting"])


def connection_refused(port: int) -> bool:
    """Whether a TCP connection to loopback `port` is refused (nothing listens)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
