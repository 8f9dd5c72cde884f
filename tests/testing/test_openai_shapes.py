"""The OpenAI shapes of the mock's answers: JSON bodies, SSE chunks, usage with cached tokens."""

from __future__ import annotations

import json

import pytest

from fdrouter.testing import MockBehavior
from fdrouter.testing.openai_shapes import prompt_text as mock_prompt_text
from fdrouter.validate import prompt_text

from .helpers import CHAT, COMPLETIONS, chat_body, long_text, sse_events

# -- answers -----------------------------------------------------------------------------------


async def test_chat_completion_returns_output_tokens_and_usage(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    body = {
        "model": "x",
        "messages": [{"role": "system", "content": "a" * 20}, {"role": "user", "content": "b" * 20}],
    }
    async with session.post(backend.url + CHAT, json=body) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert isinstance(answer["created"], int)
    assert answer["model"] == "mock-model"
    [choice] = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
    assert choice["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert backend.requests_total == 1
    assert backend.requests_in_flight == 0
    assert backend.disconnects == 0


async def test_completion_returns_text_and_usage(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    async with session.post(backend.url + COMPLETIONS, json={"model": "x", "prompt": "p" * 40}) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    [choice] = answer["choices"]
    assert choice["text"] == "tok0 tok1 "
    assert choice["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_token_id_prompts_count_one_token_per_id(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + COMPLETIONS, json={"prompt": [5, 6, 7]}) as response:
        assert (await response.json())["usage"]["prompt_tokens"] == 3


async def test_max_tokens_caps_the_generated_tokens(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=8))
    async with session.post(backend.url + CHAT, json=chat_body(max_tokens=2)) as response:
        answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "tok0 tok1 "
    assert answer["usage"]["completion_tokens"] == 2
    async with session.post(backend.url + CHAT, json=chat_body(max_tokens=100)) as response:
        assert (await response.json())["usage"]["completion_tokens"] == 8


# -- streams -----------------------------------------------------------------------------------


async def test_streaming_chat_sends_one_chunk_per_token_then_a_finish_chunk(
    mock_backend_factory, session
) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await response.text())
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "tok0 tok1 tok2 "
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]
    assert "usage" not in chunks[-1]


async def test_streaming_ends_with_done_marker(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory()
    async with session.post(backend.url + COMPLETIONS, json={"prompt": "hi", "stream": True}) as response:
        text = await response.text()
    assert text.endswith("data: [DONE]\n\n")
    assert sse_events(text).count("[DONE]") == 1


async def test_streaming_completion_chunks_carry_text(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    async with session.post(backend.url + COMPLETIONS, json={"prompt": "hi", "stream": True}) as response:
        events = sse_events(await response.text())
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "tok0 tok1 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_streaming_usage_is_sent_only_when_include_usage_is_set(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=4))
    body = chat_body(stream=True, stream_options={"include_usage": True})
    async with session.post(backend.url + CHAT, json=body) as response:
        events = sse_events(await response.text())
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 4,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all("usage" not in json.loads(e) for e in events[:-2])


async def test_stream_usage_chunk_reports_cached_tokens(mock_backend_factory, session) -> None:
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2))
    body = {"prompt": long_text("s"), "stream": True, "stream_options": {"include_usage": True}}
    usages = []
    for _ in range(2):
        async with session.post(backend.url + COMPLETIONS, json=body) as response:
            events = sse_events(await response.text())
        assert events[-1] == "[DONE]"
        usages.append(json.loads(events[-2])["usage"])
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 240]
    assert usages[1]["prompt_tokens"] == 250


# -- reading a request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]},
        {"messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "x"}]},
        {"prompt": "plain"},
        {"prompt": ["one", "two"]},
    ],
)
def test_the_cached_text_is_the_routers_prompt_text(body) -> None:
    assert mock_prompt_text(body, chat="messages" in body) == prompt_text(body)
