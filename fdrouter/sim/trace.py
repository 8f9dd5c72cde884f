"""Request traces as JSONL: one JSON object per line, loaded and checked up front.

Format (one request per line; blank lines are skipped; other keys are ignored)::

    {"arrival": 0.125, "prompt": "You are a helpful assistant. ...", "output_tokens": 128, "session": "user-7"}
    {"arrival": 0.5, "prompt_tokens": 2048, "output_tokens": 16}

- ``arrival`` (number >= 0, required): seconds since the start of the trace. Lines need
  not be sorted; requests are replayed in arrival order (ties keep file order).
- ``prompt`` (string) **or** ``prompt_tokens`` (integer >= 1), exactly one: the prompt text,
  or just its length. A length-only prompt gets synthetic text that shares no prefix with
  any other request (its first cache block is unique).
- ``output_tokens`` (integer >= 1, required): tokens to generate.
- ``session`` (string, optional): session id, what the router reads as ``session_key``.

Any bad line raises ``TraceError`` naming the file and line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from .workloads import Request, synthetic_prompt

__all__ = ["Trace", "TraceError", "load_trace"]


class TraceError(ValueError):
    """A trace file that cannot be read or has a bad line."""


@dataclass(frozen=True, slots=True)
class _Entry:
    arrival: float
    prompt: str | None
    prompt_tokens: int
    output_tokens: int
    session: str | None


class Trace:
    """The checked requests of a trace file, in arrival order; iterating yields ``Request`` objects."""

    def __init__(self, entries: list[_Entry], path: str) -> None:
        self._entries = entries
        self.path = path

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: slice) -> Trace:
        if not isinstance(index, slice):
            raise TypeError("a Trace slices into a Trace; iterate it for requests")
        return Trace(self._entries[index], self.path)

    def __iter__(self) -> Iterator[Request]:
        for rid, e in enumerate(self._entries):
            # length-only prompts are synthesised lazily: a long trace never holds all the text
            prompt = e.prompt if e.prompt is not None else synthetic_prompt(e.prompt_tokens, f"trace request {rid}")
            yield Request(rid, e.arrival, prompt, e.output_tokens, e.session)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(obj: object) -> _Entry:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    arrival = obj.get("arrival")
    if isinstance(arrival, bool) or not isinstance(arrival, int | float) or not arrival >= 0 or arrival == float("inf"):
        raise ValueError(f"'arrival' must be a number of seconds >= 0, got {arrival!r}")
    has_text, has_count = "prompt" in obj, "prompt_tokens" in obj
    if has_text == has_count:
        raise ValueError("give exactly one of 'prompt' (text) and 'prompt_tokens' (a count)")
    prompt, tokens = obj.get("prompt"), obj.get("prompt_tokens")
    if has_text and not isinstance(prompt, str):
        raise ValueError(f"'prompt' must be a string, got {type(prompt).__name__}")
    if has_count and (not _is_int(tokens) or tokens < 1):
        raise ValueError(f"'prompt_tokens' must be an integer >= 1, got {tokens!r}")
    output = obj.get("output_tokens")
    if not _is_int(output) or output < 1:
        raise ValueError(f"'output_tokens' must be an integer >= 1, got {output!r}")
    session = obj.get("session")
    if session is not None and not isinstance(session, str):
        raise ValueError(f"'session' must be a string, got {type(session).__name__}")
    return _Entry(float(arrival), prompt, tokens or 0, output, session)


def load_trace(path: str | Path) -> Trace:
    """Read and check a JSONL trace; ``TraceError`` names the line of the first problem."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    entries: list[_Entry] = []
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entries.append(_entry(json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
                except ValueError as exc:
                    raise TraceError(f"{path}:{lineno}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}: not UTF-8 text: {exc.reason}") from None
    if not entries:
        raise TraceError(f"{path}: no requests in trace")
    entries.sort(key=lambda e: e.arrival)  # stable: ties keep file order
    return Trace(entries, str(path))
