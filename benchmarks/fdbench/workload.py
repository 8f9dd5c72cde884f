"""What the benchmark sends: three load shapes and one chat request body per shape."""

from __future__ import annotations

import json
from dataclasses import dataclass

HOST = "127.0.0.1"
ENDPOINT = "/v1/chat/completions"
OUTPUT_TOKENS = 16  # the mock's answer: 16 tokens, i.e. 16 SSE events + the final one + [DONE]
REQUEST_TIMEOUT = 30.0  # per request: a hung target turns into errors, never a hung benchmark
HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Scenario:
    """One load shape: how many concurrent workers, streaming or not."""

    name: str
    concurrency: int
    stream: bool


SCENARIOS = (
    Scenario("non-stream c1", 1, False),
    Scenario("non-stream c64", 64, False),
    Scenario("stream c32", 32, True),
)
C1, C64, S32 = (s.name for s in SCENARIOS)


def request_body(*, stream: bool, prompt_chars: int) -> bytes:
    """A chat request, encoded once: the generator must not spend its CPU on JSON per request."""
    # A system prompt plus a question, roughly the size of a short chat turn.
    prompt = ("You are a helpful assistant. Answer briefly. " * (prompt_chars // 46 + 1))[:prompt_chars]
    body = {
        "model": "mock-model",
        "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "Say hello."}],
        "max_tokens": OUTPUT_TOKENS,
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


__all__ = ["C1", "C64", "ENDPOINT", "HEADERS", "HOST", "OUTPUT_TOKENS", "REQUEST_TIMEOUT", "S32", "SCENARIOS",
           "Scenario", "request_body"]
