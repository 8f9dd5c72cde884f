"""One client stream out of the SSE streams of successive PD attempts (see ``pd_reschedule``). Sans-IO.

``StreamSplice`` is fed the decode instance's chunks as they arrive and returns the bytes for
the client. The normal path -- an attempt that is not preempted -- stays byte for byte the
engine's, and costs a few ``bytes`` searches per chunk: complete events are passed on (a partial
event waits for its end), chunks are searched for ``pd_reschedule`` / ``PD Error`` before any
JSON is decoded, the token ids are collected as raw array bytes (decoded only if a reschedule
needs them) and cut out if the client did not ask for them (``token_fields``).

Only the rare paths decode events:
- a chunk naming ``pd_reschedule`` or ``PD Error``: the preempting event is recognised; its
  text (if any) goes to the client as an ordinary chunk, without the finish reason; everything
  after it in that attempt (its usage, ``[DONE]``) is swallowed, its usage remembered;
- a resumed attempt (after a reschedule): each event gets the first attempt's ``id``, loses
  the ``role`` the client already has (an event left empty is dropped), and its ``usage`` becomes
  the sum over all attempts.
"""

from __future__ import annotations

import re
from typing import Any

from . import jsonutil
from .errors import UpstreamError
from .token_fields import completion_ids, cut_fields, may_hold_fields, parse_collected, strip_fields

_RESCHEDULE = b"pd_reschedule"
_PD_ERROR = b"PD Error"
_EVENT_END = re.compile(rb"\r?\n\r?\n")
MAX_EVENT_BYTES = 64 * 1024 * 1024
"""An SSE event larger than this is refused (a stream without event ends must not fill memory);
a FastDeploy first event with the prompt's token ids of a 1M-token prompt is ~8 MB."""


def is_pd_error(obj: Any) -> bool:
    """A FastDeploy error answer or event whose message says ``PD Error`` (a preemption)."""
    if not isinstance(obj, dict) or "choices" in obj:
        return False
    error = obj.get("error")
    message = error.get("message") if isinstance(error, dict) else obj.get("message")
    return isinstance(message, str) and "PD Error" in message


def add_usage(total: dict | None, usage: Any) -> dict | None:
    """``total`` plus ``usage``, every number field by field (nested details too); a new dict."""
    if not isinstance(usage, dict):
        return total
    out = dict(total or {})
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            prior = out.get(key)
            out[key] = (prior if isinstance(prior, (int, float)) else 0) + value
        elif isinstance(value, dict):
            prior = out.get(key)
            out[key] = add_usage(prior if isinstance(prior, dict) else None, value)
        elif key not in out:
            out[key] = value
    return out


def _last_boundary(data: bytes) -> int:
    """Index just after the last event end (a blank line) in ``data``, or -1."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def _data_of(event: bytes) -> bytes | None:
    """The ``data:`` payload of one SSE event (lines joined), or None if it has none."""
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class StreamSplice:
    """Joins the streams of one request's PD attempts into one; see the module docstring.

    ``begin()`` at the start of each attempt, ``feed(chunk)`` for each of its chunks and ``end()``
    at its end, each returning bytes for the client; ``rescheduled`` then tells whether the
    attempt was preempted (the client's stream then stays open for the next attempt).
    """

    def __init__(self, *, strip_ids: bool) -> None:
        self.strip_ids = strip_ids
        self.attempts = 0
        self.rescheduled = False
        """The current attempt was preempted."""
        self.attempt_emitted = False
        """The current attempt gave the client something."""
        self.emitted = False
        """Any attempt gave the client something."""
        self._tail = b""
        self._collected: list[Any] = []  # raw id arrays (bytes) and decoded id lists, in order
        self._usage: dict | None = None  # the preempted attempts' usage, summed
        self._attempt_usage: dict | None = None  # the preempted attempt's own (cumulative) usage
        self._first_chunk: bytes | None = None  # the first bytes sent: the client's id is in there
        self._client_id: str | None = None

    def begin(self) -> None:
        """A new attempt starts (a reschedule, or a retry of an attempt that sent nothing)."""
        if self.rescheduled:
            self.attempts += 1
            self._usage = add_usage(self._usage, self._attempt_usage)
        self._attempt_usage = None
        self.rescheduled = False
        self.attempt_emitted = False
        self._tail = b""
        self._collected = []

    def take_token_ids(self) -> list[int]:
        """The ids of the tokens the preempted attempt generated, decoded now (then forgotten)."""
        ids = parse_collected(self._collected)
        self._collected = []
        return ids

    def feed(self, chunk: bytes) -> bytes:
        """Bytes for the client from one upstream chunk (complete events only)."""
        data = self._tail + chunk if self._tail else chunk
        if data.endswith(b"\n\n"):  # nearly always: chunks end where events end
            self._tail = b""
        else:
            cut = _last_boundary(data)
            if cut < 0:
                self._tail = data
                if len(data) > MAX_EVENT_BYTES:
                    raise UpstreamError(f"decode instance sent an SSE event over {MAX_EVENT_BYTES} bytes")
                return b""
            self._tail = data[cut:]
            data = data[:cut]
        if self.rescheduled or self.attempts or _RESCHEDULE in data or _PD_ERROR in data:
            return self._events(data)
        if may_hold_fields(data):
            data = cut_fields(data, strip=self.strip_ids, collect=self._collected)
        return self._emit(data)

    def end(self) -> bytes:
        """The attempt's stream ended: whatever is left of it for the client."""
        if not self._tail.strip():
            self._tail = b""
            return b""
        return self.feed(b"\n\n")  # a last event without its blank line: ended here

    def _emit(self, data: bytes) -> bytes:
        if data:
            if self._first_chunk is None:
                self._first_chunk = data
            self.attempt_emitted = self.emitted = True
        return data

    # -- the rare paths: events decoded one by one -----------------------------------------------

    def _events(self, data: bytes) -> bytes:
        out = []
        for event in _EVENT_END.split(data):
            if not event.strip():
                continue
            kept = self._event(event)
            if kept:
                if self._first_chunk is None:
                    self._first_chunk = kept
                out.append(kept + b"\n\n")
        return self._emit(b"".join(out))

    def _event(self, event: bytes) -> bytes | None:
        """One event for the client, or None to drop it."""
        payload = _data_of(event)
        if payload is None:
            return None if self.rescheduled else event  # a comment or another field: not ours
        if payload == b"[DONE]":
            return None if self.rescheduled else event
        try:
            obj = jsonutil.loads(payload)
        except ValueError:
            return None if self.rescheduled else event
        if not isinstance(obj, dict):
            return None if self.rescheduled else event
        if self.rescheduled:  # after the preempting event: only its usage matters
            if isinstance(obj.get("usage"), dict):
                self._attempt_usage = obj["usage"]  # cumulative within an attempt: the last one counts
            return None
        if is_pd_error(obj):
            self._preempted()
            return None
        choices = obj.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if first is not None and first.get("finish_reason") == "pd_reschedule":
            self._preempted()
            usage = obj.pop("usage", None)
            if isinstance(usage, dict):
                self._attempt_usage = usage
            first["finish_reason"] = None
            self._collected.append(completion_ids(first))
            return self._resumed(obj) if _has_output(first) else None
        if not self.attempts:
            # a first attempt's ordinary event that happened to name a marker: bytes unchanged
            return cut_fields(event, strip=self.strip_ids, collect=self._collected)
        if first is not None:
            self._collected.append(completion_ids(first))
        if (self.emitted and first is not None and not _has_output(first) and not first.get("finish_reason")
                and not obj.get("usage")):
            return None  # a resumed attempt's opening event (role, prompt ids): the client has one
        return self._resumed(obj)

    def _preempted(self) -> None:
        self.rescheduled = True
        if self._client_id is None:
            self._client_id = self._first_id()

    def _first_id(self) -> str | None:
        """The ``id`` of the first event the client got (decoded once, on the first reschedule)."""
        if self._first_chunk is None:
            return None
        for event in _EVENT_END.split(self._first_chunk):
            payload = _data_of(event)
            if payload is None or payload == b"[DONE]":
                continue
            try:
                obj = jsonutil.loads(payload)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                return obj["id"]
        return None

    def _resumed(self, obj: dict) -> bytes:
        """An event as the client sees it: first attempt's id, no second role, usage summed."""
        if self._client_id is None:
            self._client_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        elif "id" in obj:
            obj["id"] = self._client_id
        if self.emitted:
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict):
                    delta.pop("role", None)
        if isinstance(obj.get("usage"), dict) and self._usage is not None:
            obj["usage"] = add_usage(self._usage, obj["usage"])
        if self.strip_ids:
            strip_fields(obj)
        return b"data: " + jsonutil.dumps(obj)


def _has_output(choice: dict) -> bool:
    """Whether a decoded choice carries generated output (text, reasoning, tool calls, logprobs)."""
    delta = choice.get("delta")
    place = delta if isinstance(delta, dict) else choice
    for key in ("content", "reasoning_content", "text", "tool_calls", "multimodal_content"):
        if place.get(key):
            return True
    return bool(choice.get("logprobs")) or bool(completion_ids(choice))


__all__ = ["MAX_EVENT_BYTES", "StreamSplice", "add_usage", "is_pd_error"]
