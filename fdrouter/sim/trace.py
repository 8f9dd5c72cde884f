"""Request traces as JSONL, in fdrouter's format or Mooncake's, loaded and checked up front.

The format is detected per file from its first request line: Mooncake's (``timestamp``,
``input_length``, ``output_length``, ``hash_ids``: see ``fdrouter.sim.mooncake``) or
fdrouter's own, one JSON object per line (blank lines are skipped; other keys are ignored)::

    {"arrival": 0.125, "prompt": "You are a helpful assistant. ...", "output_tokens": 128, "session": "user-7"}
    {"arrival": 0.5, "prompt_tokens": 2048, "output_tokens": 16}

- ``arrival`` (number >= 0, required): seconds since the start of the trace.
- ``prompt`` (string) **or** ``prompt_tokens`` (integer >= 1), exactly one: the prompt text,
  or just its length. A length-only prompt gets synthetic text that shares no prefix with
  any other request (its first cache block is unique).
- ``output_tokens`` (integer >= 1, required): tokens to generate.
- ``session`` (string, optional): session id, what the router reads as ``session_key``.

Lines need not be sorted; requests come in arrival order (ties keep file order), with ids
0, 1, ... in that order. A Mooncake trace yields ``BlockRequest`` objects (prompts as block
ids, no text), fdrouter's ``Request`` objects. ``time_scale`` multiplies every arrival time
(0.5: twice as fast). Any bad line raises ``TraceError`` naming the file and line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from .block_requests import DEFAULT_TRACE_BLOCK_TOKENS, BlockRequest
from .mooncake import MOONCAKE_KEYS, BlockEntry, is_mooncake, mooncake_entry
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
    """The checked requests of a trace file, in arrival order; iterating yields request objects.

    ``block_tokens`` is the tokens per block id of a Mooncake trace (its requests are
    ``BlockRequest``); None for fdrouter's format (``Request``).
    """

    def __init__(self, entries: list[_Entry] | list[BlockEntry], path: str, block_tokens: int | None = None,
                 first_id: int = 0) -> None:
        self._entries = entries
        self.path = path
        self.block_tokens = block_tokens
        self._first_id = first_id

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: slice) -> Trace:
        if not isinstance(index, slice):
            raise TypeError("a Trace slices into a Trace; iterate it for requests")
        if index.step not in (None, 1):
            raise ValueError("a Trace slices with step 1 only (requests keep their ids)")
        start = range(len(self._entries))[index]  # ids stay those of the whole trace
        first = self._first_id + (start[0] if len(start) else 0)
        return Trace(self._entries[index], self.path, self.block_tokens, first)

    def __iter__(self) -> Iterator[Request | BlockRequest]:
        first = self._first_id
        if self.block_tokens is not None:
            block_tokens = self.block_tokens
            for rid, b in enumerate(self._entries, first):
                assert isinstance(b, BlockEntry)
                yield BlockRequest(rid, b.arrival, b.prompt_tokens, b.output_tokens, b.blocks, block_tokens, b.session)
            return
        for rid, e in enumerate(self._entries, first):
            assert isinstance(e, _Entry)
            # length-only prompts are synthesised lazily: a long trace never holds all the text
            prompt = e.prompt if e.prompt is not None else synthetic_prompt(e.prompt_tokens, f"trace request {rid}")
            yield Request(rid, e.arrival, prompt, e.output_tokens, e.session)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(obj: object, time_scale: float) -> _Entry:
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
    return _Entry(float(arrival) * time_scale, prompt, tokens or 0, output, session)


_UNKNOWN = (
    "neither fdrouter's trace format ('arrival', 'prompt' or 'prompt_tokens', 'output_tokens') "
    f"nor Mooncake's ({', '.join(repr(k) for k in MOONCAKE_KEYS)})"
)


def load_trace(path: str | Path, *, block_tokens: int | None = None, time_scale: float = 1.0) -> Trace:
    """Read and check a JSONL trace of either format; ``TraceError`` names the line of the first problem.

    ``block_tokens``: tokens per ``hash_ids`` block of a Mooncake trace (default 512, the
    release's); unused for fdrouter's format. ``time_scale`` multiplies arrival times.
    """
    if not time_scale > 0 or time_scale == float("inf"):
        raise TraceError(f"time_scale must be a number > 0, got {time_scale}")
    if block_tokens is not None and block_tokens < 1:
        raise TraceError(f"block_tokens must be >= 1, got {block_tokens}")
    bt = block_tokens or DEFAULT_TRACE_BLOCK_TOKENS
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    entries: list = []
    mooncake: bool | None = None  # decided by the first request line
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if mooncake is None:
                        mooncake = is_mooncake(obj)
                        if not mooncake and isinstance(obj, dict) and "arrival" not in obj \
                                and not {"prompt", "prompt_tokens", "output_tokens"} & obj.keys():
                            raise ValueError(_UNKNOWN)
                    entries.append(mooncake_entry(obj, bt, time_scale) if mooncake else _entry(obj, time_scale))
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
                except ValueError as exc:
                    fmt = "Mooncake trace: " if mooncake else ""
                    raise TraceError(f"{path}:{lineno}: {fmt}{exc}") from None
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}: not UTF-8 text: {exc.reason}") from None
    if not entries:
        raise TraceError(f"{path}: no requests in trace")
    entries.sort(key=lambda e: e.arrival)  # stable: ties keep file order
    return Trace(entries, str(path), bt if mooncake else None)
