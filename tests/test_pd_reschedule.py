"""PD reschedule bookkeeping and the merge of non-streaming answers (sans-IO)."""

from __future__ import annotations

import json

import pytest

from fdrouter import RouterConfig
from fdrouter.errors import UpstreamStatus
from fdrouter.pd_reschedule import AnswerMerge, PdRescheduleExhausted, Reschedule


def chat_answer(rid: str, start: int, stop: int, finish: str, *, ids: bool = True) -> bytes:
    message = {"role": "assistant", "content": "".join(f"tok{i} " for i in range(start, stop))}
    if ids:
        message.update(prompt_token_ids=[9, 9], completion_token_ids=list(range(start, stop)),
                       prompt_tokens="hi", completion_tokens=None)
    return json.dumps({"id": rid, "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 2, "completion_tokens": stop - start, "total_tokens": 2 + stop - start}}).encode()


def test_an_unpreempted_answer_passes_unchanged_when_the_client_asked_for_ids():
    body = chat_answer("chatcmpl-r", 0, 3, "length")
    assert AnswerMerge(strip_ids=False).feed(body) is body


def test_an_unpreempted_answer_loses_the_token_fields_the_client_did_not_ask_for():
    answer = json.loads(AnswerMerge(strip_ids=True).feed(chat_answer("chatcmpl-r", 0, 3, "length")))
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 "}


def test_preempted_answers_merge_into_the_whole_answer_with_the_first_id_and_summed_usage():
    merge = AnswerMerge(strip_ids=False)
    assert merge.feed(chat_answer("chatcmpl-r", 0, 2, "pd_reschedule")) is None
    assert merge.take_token_ids() == [0, 1]
    assert merge.feed(chat_answer("chatcmpl-r-retry1", 2, 3, "pd_reschedule")) is None
    assert merge.take_token_ids() == [2]
    answer = json.loads(merge.feed(chat_answer("chatcmpl-r-retry2", 3, 5, "length")))
    assert answer["id"] == "chatcmpl-r"
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "tok0 tok1 tok2 tok3 tok4 "
    assert choice["message"]["completion_token_ids"] == [0, 1, 2, 3, 4]
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}


def test_merged_completions_join_their_text_and_drop_ids_not_asked_for():
    def completion(rid: str, start: int, stop: int, finish: str) -> bytes:
        return json.dumps({"id": rid, "choices": [{"index": 0, "text": "".join(f"tok{i} " for i in range(start, stop)),
                                                   "completion_token_ids": list(range(start, stop)),
                                                   "finish_reason": finish}]}).encode()

    merge = AnswerMerge(strip_ids=True)
    assert merge.feed(completion("cmpl-r", 0, 1, "pd_reschedule")) is None
    answer = json.loads(merge.feed(completion("cmpl-r-retry1", 1, 3, "length")))
    assert answer["choices"][0] == {"index": 0, "text": "tok0 tok1 tok2 ", "finish_reason": "length"}


def test_an_error_answer_saying_pd_error_is_a_preemption_that_generated_nothing():
    merge = AnswerMerge(strip_ids=True)
    assert merge.feed(b'{"error": {"message": "PD Error: preempted", "type": "internal_error"}}') is None
    assert merge.take_token_ids() == []
    text = b'{"choices": [{"index": 0, "message": {"content": "about PD Error"}, "finish_reason": "stop"}]}'
    assert merge.feed(text) == text  # a model talking about it is not an error


def test_each_attempt_gets_the_retry_id_the_tokens_so_far_and_asks_for_token_ids():
    state = Reschedule({"messages": []}, max_retries=3, exclude_decode=False)
    first = state.shape({"request_id": "r", "messages": []})
    assert first == {"request_id": "r", "messages": [], "return_token_ids": True}
    state.merge.feed(chat_answer("chatcmpl-r", 0, 2, "pd_reschedule"))
    state.preempted("http://d1")
    assert state.shape({"request_id": "r"}) == {"request_id": "r-retry1", "return_token_ids": True,
                                                "completion_token_ids": [0, 1]}
    state.merge.feed(chat_answer("chatcmpl-r-retry1", 2, 4, "pd_reschedule"))
    state.preempted("http://d2")
    assert state.shape({"request_id": "r"})["completion_token_ids"] == [0, 1, 2, 3]
    assert state.shape({"request_id": "r"})["request_id"] == "r-retry2"


def test_the_budget_is_the_retry_count_then_a_503_naming_the_setting():
    state = Reschedule({}, max_retries=1, exclude_decode=True)
    state.preempted("http://d1")
    assert state.avoid == {"http://d1"}
    with pytest.raises(PdRescheduleExhausted, match="preempted this request 2 time.*--preempt-retry-count 1") as info:
        state.preempted("http://d2")
    assert info.value.status == 503 and info.value.code == "pd_reschedule_exhausted"
    assert info.value.instance is None  # not an instance failure: never retried elsewhere


def test_decodes_are_avoided_only_when_asked():
    state = Reschedule({}, max_retries=3, exclude_decode=False)
    state.preempted("http://d1")
    assert state.avoid == set()


def test_only_decode_errors_saying_pd_error_count_as_preemptions():
    state = Reschedule({}, max_retries=3, exclude_decode=False)
    pd_error = UpstreamStatus(500, b'{"error": {"message": "PD Error"}}', "application/json", instance="d", leg="decode")
    other = UpstreamStatus(500, b'{"error": {"message": "boom"}}', "application/json", instance="d", leg="decode")
    from_prefill = UpstreamStatus(500, b"PD Error", "text/plain", instance="p", leg="prefill")
    assert state.is_pd_error(pd_error)
    assert not state.is_pd_error(other) and not state.is_pd_error(from_prefill)


@pytest.mark.parametrize(("body", "config", "expected"), [
    ({}, {"splitwise": True}, True),
    ({}, {"splitwise": False}, False),
    ({}, {"splitwise": True, "preempt_retry_count": 0}, False),
    ({"n": 2}, {"splitwise": True}, False),
    ({"prompt": ["a", "b"]}, {"splitwise": True}, False),  # a batch: one choice per prompt
    ({"prompt": [1, 2, 3]}, {"splitwise": True}, True),  # token ids: one prompt
])
def test_which_requests_may_be_rescheduled(body, config, expected):
    assert (Reschedule.for_request(body, RouterConfig(**config)) is not None) == expected
