"""Splicing the SSE streams of rescheduled PD attempts into the one stream a client sees (sans-IO)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fdrouter import pd_splice
from fdrouter.errors import UpstreamError
from fdrouter.pd_splice import StreamSplice, add_usage

PROMPT_IDS = [101, 102, 103]


def event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def fastdeploy_attempt(rid: str, start: int, stop: int, *, finish: str, usage: bool = True) -> bytes:
    """A FastDeploy chat stream with return_token_ids: a role event (with the prompt's ids), one event
    per token, a finishing event, a usage event, [DONE] (serving_chat.py's order)."""
    head = {"id": rid, "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [event({**head, "choices": [{"index": 0, "delta": {
        "role": "assistant", "content": "", "reasoning_content": "", "prompt_token_ids": PROMPT_IDS,
        "completion_token_ids": None}}]})]
    for i in range(start, stop):
        out.append(event({**head, "choices": [{"index": 0, "delta": {
            "content": f"tok{i} ", "reasoning_content": "", "completion_token_ids": [i], "completion_tokens": None},
            "finish_reason": None}]}))
    out.append(event({**head, "choices": [{"index": 0, "delta": {"content": "", "completion_token_ids": []},
                                           "finish_reason": finish}]}))
    if usage:
        out.append(event({**head, "choices": [], "usage": {
            "prompt_tokens": 3, "completion_tokens": stop - start, "total_tokens": 3 + stop - start,
            "prompt_tokens_details": {"cached_tokens": 1}}}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def run(splice: StreamSplice, attempts: list[bytes], cuts: list[int] | None = None) -> bytes:
    """Feed each attempt (cut into chunks at ``cuts``, positions modulo its length); the client's bytes."""
    out = []
    for data in attempts:
        splice.begin()
        points = sorted({c % (len(data) + 1) for c in (cuts or [])} | {0, len(data)})
        for a, b in zip(points, points[1:], strict=False):
            out.append(splice.feed(data[a:b]))
        out.append(splice.end())
        assert splice.rescheduled == (b'"pd_reschedule"' in data or b"PD Error" in data)
    return b"".join(out)


def client_events(body: bytes) -> list:
    blocks = [b for b in body.split(b"\n\n") if b]
    assert all(b.startswith(b"data: ") for b in blocks)
    return [b[6:].decode() if b[6:] == b"[DONE]" else json.loads(b[6:]) for b in blocks]


def text_of(events: list) -> str:
    return "".join((c.get("delta") or {}).get("content") or c.get("text") or ""
                   for e in events if isinstance(e, dict) for c in e["choices"])


THREE_ATTEMPTS = [
    fastdeploy_attempt("chatcmpl-r", 0, 3, finish="pd_reschedule"),
    fastdeploy_attempt("chatcmpl-r-retry1", 3, 5, finish="pd_reschedule"),
    fastdeploy_attempt("chatcmpl-r-retry2", 5, 8, finish="length"),
]


def test_an_unpreempted_stream_passes_byte_for_byte_when_the_client_asked_for_the_ids():
    attempt = fastdeploy_attempt("chatcmpl-r", 0, 4, finish="length")
    assert run(StreamSplice(strip_ids=False), [attempt]) == attempt


def test_an_unpreempted_stream_loses_only_the_token_fields_the_client_did_not_ask_for():
    events = client_events(run(StreamSplice(strip_ids=True), [fastdeploy_attempt("chatcmpl-r", 0, 4, finish="length")]))
    assert "_token" not in json.dumps([e for e in events if e != "[DONE]" and "choices" in e and e["choices"]])
    assert text_of(events) == "tok0 tok1 tok2 tok3 "
    assert events[-2]["usage"]["completion_tokens"] == 4  # usage numbers are not token fields


def test_preempted_attempts_make_one_continuous_stream():
    splice = StreamSplice(strip_ids=True)
    events = client_events(run(splice, THREE_ATTEMPTS[:1]))
    assert splice.take_token_ids() == [0, 1, 2]
    events += client_events(run(splice, THREE_ATTEMPTS[1:2]))
    assert splice.take_token_ids() == [3, 4]
    events += client_events(run(splice, THREE_ATTEMPTS[2:]))
    assert text_of(events) == "".join(f"tok{i} " for i in range(8))
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    assert {e["id"] for e in chunks} == {"chatcmpl-r"}  # the first attempt's id throughout
    assert "pd_reschedule" not in json.dumps(chunks)
    assert sum("role" in c.get("delta", {}) for e in chunks for c in e["choices"]) == 1
    [usage] = [e["usage"] for e in chunks if "usage" in e]
    assert usage == {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17,
                     "prompt_tokens_details": {"cached_tokens": 3}}  # the attempts' sum


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=12))
def test_how_the_bytes_are_cut_into_chunks_changes_nothing(cuts):
    whole = run(StreamSplice(strip_ids=True), THREE_ATTEMPTS)
    assert run(StreamSplice(strip_ids=True), THREE_ATTEMPTS, cuts) == whole


def test_the_preempting_events_own_text_reaches_the_client_without_its_finish_reason():
    head = {"id": "cmpl-r", "object": "text_completion", "model": "m"}
    first = b"".join([
        event({**head, "choices": [{"index": 0, "text": "tok0 ", "completion_token_ids": [0], "finish_reason": None}]}),
        event({**head, "choices": [{"index": 0, "text": "tok1 ", "completion_token_ids": [1],
                                    "finish_reason": "pd_reschedule"}]}),
        b"data: [DONE]\n\n",
    ])
    second = b"".join([
        event({**head, "id": "cmpl-r-retry1", "choices": [{"index": 0, "text": "tok2 ", "completion_token_ids": [2],
                                                           "finish_reason": "length"}]}),
        b"data: [DONE]\n\n",
    ])
    splice = StreamSplice(strip_ids=False)
    events = client_events(run(splice, [first]))
    assert splice.take_token_ids() == [0, 1]
    events += client_events(run(splice, [second]))
    assert text_of(events) == "tok0 tok1 tok2 "
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]] == [None, None, "length"]
    assert [e["choices"][0]["completion_token_ids"] for e in events[:-1]] == [[0], [1], [2]]  # asked for: kept
    assert {e["id"] for e in events[:-1]} == {"cmpl-r"}


def test_a_pd_error_event_is_a_preemption():
    first = event({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": {"content": "tok0 ", "completion_token_ids": [0]}}]})
    first += event({"error": {"message": "request r: PD Error: decode preempted", "type": "internal_error"}})
    first += b"data: [DONE]\n\n"
    splice = StreamSplice(strip_ids=True)
    events = client_events(run(splice, [first, fastdeploy_attempt("chatcmpl-r-retry1", 1, 2, finish="length")]))
    assert text_of(events) == "tok0 tok1 "
    assert not any(isinstance(e, dict) and "error" in e for e in events)


def test_events_framed_with_crlf_are_recognised():
    attempt = THREE_ATTEMPTS[0].replace(b"\n\n", b"\r\n\r\n")
    splice = StreamSplice(strip_ids=True)
    run(splice, [attempt, fastdeploy_attempt("chatcmpl-r-retry1", 3, 4, finish="length")])
    assert not splice.rescheduled


def test_a_resumed_attempt_that_sent_nothing_yet_has_not_emitted():
    splice = StreamSplice(strip_ids=True)
    run(splice, THREE_ATTEMPTS[:1])
    splice.begin()
    opening = THREE_ATTEMPTS[1].split(b"\n\n")[0] + b"\n\n"  # only the role event: dropped
    assert splice.feed(opening) == b""
    assert not splice.attempt_emitted and splice.emitted


def test_an_event_that_never_ends_is_refused(monkeypatch):
    monkeypatch.setattr(pd_splice, "MAX_EVENT_BYTES", 1000)
    splice = StreamSplice(strip_ids=True)
    splice.begin()
    with pytest.raises(UpstreamError, match="over 1000 bytes"):
        for _ in range(20):
            splice.feed(b"data: " + b"x" * 100)


def test_usage_adds_up_field_by_field_nested_ones_too():
    total = add_usage(None, {"prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}, "note": "x"})
    total = add_usage(total, {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": None, "image_tokens": 4}})
    assert total == {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 1, "image_tokens": 4}, "note": "x"}


def test_a_last_event_without_its_blank_line_still_counts():
    preempting = THREE_ATTEMPTS[0].rsplit(b"data: [DONE]", 1)[0].rstrip(b"\n")  # ends mid-way: no [DONE]
    splice = StreamSplice(strip_ids=True)
    splice.begin()
    out = splice.feed(preempting) + splice.end()
    assert splice.rescheduled and b"pd_reschedule" not in out
    assert splice.take_token_ids() == [0, 1, 2]


def test_events_that_are_not_json_objects_pass_through_a_resumed_attempt():
    splice = StreamSplice(strip_ids=True)
    run(splice, THREE_ATTEMPTS[:1])
    splice.begin()
    assert splice.feed(b"data: [1, 2]\n\n: keep-alive\n\n") == b"data: [1, 2]\n\n: keep-alive\n\n"
