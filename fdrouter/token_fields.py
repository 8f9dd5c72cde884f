"""FastDeploy's ``return_token_ids`` fields in answers: found, collected and cut, mostly without decoding JSON.

To reschedule a preempted PD request the router must send the tokens generated so far
(``completion_token_ids``), so it asks the engine for them (``return_token_ids: true``). A
FastDeploy engine then adds, to each chat ``message``/``delta`` or completions choice:
``prompt_token_ids`` (the whole prompt, on a stream's first event), ``completion_token_ids``,
``prompt_tokens`` and ``completion_tokens`` (texts, or null) and, in older versions,
``text_after_process`` and ``raw_prediction``. A client that did not ask for them gets them
removed again.

``cut_fields`` works on the raw bytes of any number of SSE events or of a JSON body, with
regular expressions: a member is its quoted name followed by ``:`` (inside a JSON string every
quote is escaped, and a string value is never followed by ``:``, so that is always a key) and it
goes out with one of its commas. Values it takes out are flat arrays, strings and null; a
number is left alone, so ``usage.prompt_tokens`` survives. No JSON is decoded: on the hot path
of a PD stream this costs a few ``bytes`` searches and two ``re.sub`` per chunk
(tests/test_token_fields.py checks it against a real JSON round trip, on generated answers).
``strip_fields`` does the same on already decoded objects.
"""

from __future__ import annotations

import re
from typing import Any

from . import jsonutil

TOKEN_FIELDS = ("prompt_token_ids", "completion_token_ids", "prompt_tokens", "completion_tokens",
                "text_after_process", "raw_prediction")
"""The members FastDeploy adds to an answer's choices when ``return_token_ids`` is set."""

_NAMES = b"|".join(name.encode() for name in TOKEN_FIELDS)
# One member: a token field's key and a value we take out -- a flat array (of numbers), a string or
# null; a number (usage.prompt_tokens) does not match.
_MEMBER = rb'"(?:' + _NAMES + rb')"\s*:\s*(?:\[[^\[\]{}"]*\]|"(?:[^"\\]|\\.)*"|null)'
# A member after a comma goes out with that comma; then (no member is left after a comma) a first
# member of an object goes out with the comma after it. Two passes, each pattern starting with a
# literal byte the regex engine can scan for: one alternation with a look-behind was 3x slower.
_CUT_AFTER_COMMA = re.compile(rb",\s*" + _MEMBER)
_CUT_FIRST = re.compile(rb"\{\s*" + _MEMBER + rb"\s*,?")
# ``"name":`` with both quotes unescaped is always a key: a string value's quotes are followed by
# ``,``, ``}`` or ``]``, never by ``:``, and any quote inside a string is escaped.
_COMPLETION_IDS = re.compile(rb'"completion_token_ids"\s*:\s*(\[[^\[\]{}"]*\])')


def may_hold_fields(data: bytes) -> bool:
    """A cheap pre-check: False means ``data`` certainly holds none of the token fields."""
    return b"_token" in data or b"text_after_process" in data or b"raw_prediction" in data


def cut_fields(data: bytes, *, strip: bool, collect: list[Any] | None = None) -> bytes:
    """``data`` without the token fields (if ``strip``); the raw ``completion_token_ids`` arrays
    (bytes, in order of appearance) are appended to ``collect`` if given. Unchanged bytes are
    returned as the same object."""
    if collect is not None and b'"completion_token_ids"' in data:
        collect.extend(_COMPLETION_IDS.findall(data))
    if not strip:
        return data
    out = _CUT_FIRST.sub(b"{", _CUT_AFTER_COMMA.sub(b"", data))
    return data if len(out) == len(data) else out


def parse_collected(collected: list[Any]) -> list[int]:
    """The token ids of what ``cut_fields`` collected (raw arrays) and of decoded lists, in order."""
    out: list[int] = []
    for item in collected:
        values = jsonutil.loads(item) if isinstance(item, bytes) else item
        out.extend(v for v in values if type(v) is int)
    return out


def choice_places(choice: Any) -> list[dict]:
    """Where the token fields live in one decoded choice: the choice itself, its delta, its message."""
    if not isinstance(choice, dict):
        return []
    places = [choice]
    for name in ("delta", "message"):
        inner = choice.get(name)
        if isinstance(inner, dict):
            places.append(inner)
    return places


def strip_fields(obj: Any) -> None:
    """Remove the token fields from every choice of a decoded answer or chunk, in place."""
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        return
    for choice in obj["choices"]:
        for place in choice_places(choice):
            for name in TOKEN_FIELDS:
                value = place.get(name, 0)
                if value is None or isinstance(value, (str, list)):
                    place.pop(name, None)


def completion_ids(choice: Any) -> list[int]:
    """The ``completion_token_ids`` of one decoded choice (chat message/delta or completions choice)."""
    for place in choice_places(choice):
        ids = place.get("completion_token_ids")
        if isinstance(ids, list):
            return [v for v in ids if type(v) is int]
    return []


__all__ = ["TOKEN_FIELDS", "choice_places", "completion_ids", "cut_fields", "may_hold_fields", "parse_collected",
           "strip_fields"]
