"""The mock as a FastDeploy decode instance that preempts (pd_reschedule) and goes on from completion_token_ids."""

from __future__ import annotations

import json
import random

from fdrouter.testing import MockBehavior

from .helpers import CHAT, COMPLETIONS, chat_body, post_json, sse_events


async def test_a_preempted_answer_stops_after_k_tokens_with_finish_reason_pd_reschedule(mock_backend_factory, session):
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=8, preempt_after_tokens=3))
    answer = await post_json(session, backend.url + CHAT, chat_body())
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "pd_reschedule"
    assert choice["message"]["content"] == "tok0 tok1 tok2 "
    assert answer["usage"]["completion_tokens"] == 3


async def test_completion_token_ids_make_the_attempts_add_up_to_the_unpreempted_answer(mock_backend_factory, session):
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=8, preempt_after_tokens=3))
    done: list[int] = []
    texts = []
    while True:
        body = chat_body(return_token_ids=True, **({"completion_token_ids": done} if done else {}))
        [choice] = (await post_json(session, backend.url + CHAT, body))["choices"]
        texts.append(choice["message"]["content"])
        done = done + choice["message"]["completion_token_ids"]
        if choice["finish_reason"] != "pd_reschedule":
            break
    assert texts == ["tok0 tok1 tok2 ", "tok3 tok4 tok5 ", "tok6 tok7 "]
    assert done == list(range(8))
    assert choice["finish_reason"] == "length"


async def test_a_preempted_stream_ends_with_a_pd_reschedule_event_carrying_usage(mock_backend_factory, session):
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=8, preempt_after_tokens=2))
    body = chat_body(stream=True, stream_options={"include_usage": True}, return_token_ids=True,
                     completion_token_ids=[0, 1, 2])
    async with session.post(backend.url + CHAT, json=body) as response:
        events = sse_events(await response.text())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert [d.get("content") for d in deltas] == ["tok3 ", "tok4 ", None]
    assert [d.get("completion_token_ids") for d in deltas] == [[3], [4], None]
    assert deltas[0]["role"] == "assistant" and "prompt_token_ids" in deltas[0]  # a new request to the engine
    assert chunks[-1]["choices"][0]["finish_reason"] == "pd_reschedule"
    assert chunks[-1]["usage"]["completion_tokens"] == 2


async def test_completions_carry_token_ids_in_the_choice(mock_backend_factory, session):
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=3))
    answer = await post_json(session, backend.url + COMPLETIONS, {"prompt": [5, 6, 7], "return_token_ids": True})
    [choice] = answer["choices"]
    assert choice["prompt_token_ids"] == [5, 6, 7]
    assert choice["completion_token_ids"] == [0, 1, 2]
    assert choice["finish_reason"] == "length"


async def test_without_return_token_ids_answers_carry_no_token_ids(mock_backend_factory, session):
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(output_tokens=2))
    answer = await post_json(session, backend.url + CHAT, chat_body())
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 "}


async def test_a_callable_decides_per_request_and_a_seeded_one_is_repeatable(mock_backend_factory, session):
    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        return ["pd_reschedule" if rng.random() < 0.5 else "length" for _ in range(20)]

    rng = random.Random(7)
    backend = await mock_backend_factory(role="decode", behavior=MockBehavior(
        output_tokens=4, preempt_after_tokens=lambda body: 1 if rng.random() < 0.5 else None))
    reasons = [(await post_json(session, backend.url + CHAT, chat_body()))["choices"][0]["finish_reason"]
               for _ in range(20)]
    assert reasons == run(7)
    assert "pd_reschedule" in reasons and "length" in reasons


async def test_a_prefill_instance_never_preempts(mock_backend_factory, session):
    backend = await mock_backend_factory(role="prefill", behavior=MockBehavior(preempt_after_tokens=0))
    answer = await post_json(session, backend.url + CHAT, chat_body())
    assert answer["choices"][0]["finish_reason"] == "length"
