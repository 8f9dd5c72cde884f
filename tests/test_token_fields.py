"""Token fields cut from raw answer bytes agree with decoding, deleting and encoding again."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from fdrouter.token_fields import completion_ids, cut_fields, parse_collected, strip_fields

# text that tries to look like the fields: quotes, backslashes, commas, braces and the key names
_TRICKY = st.lists(st.sampled_from(['"', "\\", ",", ":", "{", "}", "[", "]", " ", "a", "é", "\n",
                                    "completion_token_ids", '"prompt_tokens":', "null"]), max_size=12).map("".join)
_IDS = st.lists(st.integers(min_value=0, max_value=200_000), max_size=5)


@st.composite
def _place(draw: st.DrawFn) -> dict:
    """A chat message/delta or a completions choice body: text, and some token fields, in any order."""
    items = [("content", draw(_TRICKY))]
    if draw(st.booleans()):
        items.append(("prompt_token_ids", draw(_IDS)))
    if draw(st.booleans()):
        items.append(("completion_token_ids", draw(_IDS)))
    for name in ("prompt_tokens", "completion_tokens", "raw_prediction"):
        if draw(st.booleans()):
            items.append((name, draw(st.none() | _TRICKY)))
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order)


@st.composite
def _answer(draw: st.DrawFn) -> dict:
    place = draw(_place())
    choice = {"index": 0, draw(st.sampled_from(["delta", "message"])): place, "finish_reason": None}
    if draw(st.booleans()):  # completions: the fields sit in the choice itself
        choice = {"index": 0, "text": draw(_TRICKY), **place}
    answer = {"id": draw(_TRICKY), "choices": [choice]}
    if draw(st.booleans()):
        answer["usage"] = {"prompt_tokens": draw(st.integers(0, 99)), "completion_tokens": draw(st.integers(0, 9)),
                           "prompt_tokens_details": {"cached_tokens": 0}}
    return answer


def _encode(obj: dict, spaced: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":")).encode()


@given(st.lists(_answer(), min_size=1, max_size=4), st.booleans())
def test_cutting_the_fields_from_sse_bytes_equals_deleting_them_from_the_decoded_events(answers, spaced):
    stream = b"".join(b"data: " + _encode(a, spaced) + b"\n\n" for a in answers)
    collected: list = []
    cut = cut_fields(stream, strip=True, collect=collected)
    events = [json.loads(block[len(b"data: "):]) for block in cut.split(b"\n\n") if block]
    for answer in answers:
        strip_fields(answer)
    assert events == answers


@given(st.lists(_answer(), min_size=1, max_size=4), st.booleans(), st.booleans())
def test_the_collected_completion_ids_are_every_events_in_order(answers, spaced, strip):
    expected = [t for a in answers for t in completion_ids(a["choices"][0])]
    stream = b"".join(b"data: " + _encode(a, spaced) + b"\n\n" for a in answers)
    collected: list = []
    cut_fields(stream, strip=strip, collect=collected)
    assert parse_collected(collected) == expected


def test_numbers_of_the_same_name_stay_usage_keeps_its_prompt_tokens():
    body = b'{"choices":[{"message":{"content":"x","prompt_tokens":"the prompt"}}],"usage":{"prompt_tokens":7}}'
    assert cut_fields(body, strip=True) == b'{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":7}}'


def test_nothing_to_cut_returns_the_very_same_bytes():
    body = b'data: {"choices":[{"delta":{"content":"tok0 "}}]}\n\n'
    assert cut_fields(body, strip=True) is body


def test_without_strip_the_bytes_stay_and_the_ids_are_still_collected():
    body = b'data: {"choices":[{"delta":{"content":"a","completion_token_ids":[4,5]}}]}\n\n'
    collected: list = []
    assert cut_fields(body, strip=False, collect=collected) is body
    assert parse_collected(collected) == [4, 5]


def test_a_key_inside_a_string_is_text_not_a_field():
    body = json.dumps({"choices": [{"delta": {"content": '{"completion_token_ids":[1],"prompt_tokens":null}'}}]},
                      separators=(",", ":")).encode()
    collected: list = []
    assert cut_fields(body, strip=True, collect=collected) is body
    assert collected == []
