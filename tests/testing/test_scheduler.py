"""The engine model: continuous batching in real time, as the simulator's planner decides it."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import PrefixCache
from fdrouter.testing import MockBackend, MockBehavior
from fdrouter.testing.scheduler import EngineScheduler, EngineSequence, Step

from .helpers import (
    CHAT,
    COMPLETIONS,
    cached_tokens,
    chat_body,
    fast_engine,
    long_text,
    metrics,
    post_json,
    stream_timed,
)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_engine_model_answers_like_the_default_path(mock_backend_factory, session, stream) -> None:
    plain = await mock_backend_factory(behavior=MockBehavior(output_tokens=3))
    timed = await mock_backend_factory(behavior=MockBehavior(output_tokens=3, engine=fast_engine()))
    answers = []
    for backend in (plain, timed):
        for body in (chat_body(request_id="r"), chat_body(request_id="r", max_tokens=0)):
            body.update(stream=stream, stream_options={"include_usage": True})
            async with session.post(backend.url + CHAT, json=body) as response:
                text = await response.text()
            answers.append(re.sub(r'"created": ?\d+', "", text))
    assert answers[:2] == answers[2:]
    assert "tok2" in answers[0] and "tok0" not in answers[1]


async def test_a_cached_prompt_has_a_shorter_time_to_first_token(mock_backend_factory, session) -> None:
    # 250-token prompts at 2 ms per uncached token: 500 ms of prefill uncached, 20 ms cached (10 tokens).
    engine = fast_engine(prefill_per_token_s=0.002, decode_base_s=0.001)
    prefill = engine.prefill_time(250)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=2, engine=engine))
    url = backend.url + COMPLETIONS
    uncached, _, chunks = await stream_timed(session, url, {"prompt": long_text("a")})
    assert cached_tokens(chunks[-1]) == 0
    cached, _, chunks = await stream_timed(session, url, {"prompt": long_text("a")})
    assert cached_tokens(chunks[-1]) == 240
    other, _, chunks = await stream_timed(session, url, {"prompt": long_text("b")})  # same length, uncached
    assert cached_tokens(chunks[-1]) == 0
    # the uncached ones sleep at least their prefill (a lower bound, load cannot break it); the
    # cached one has 230 ms to spare below half of it, far more than a loaded machine's stalls
    assert min(uncached, other) >= prefill * 0.99, (uncached, other)
    assert cached < prefill / 2, (cached, uncached, other)


def test_the_scheduler_admits_fifo_up_to_max_batch_and_times_steps_by_batch_size() -> None:
    # The scheduler's decisions without the clock: plan a step, then finish it, as its loop does.
    engine = EngineModel(prefill_per_token_s=0.001, decode_base_s=0.004, decode_per_seq_s=0.001, max_batch=2)
    admitted: list[EngineSequence] = []
    scheduler = EngineScheduler(admitted.extend)
    seqs = [EngineSequence(completion_tokens=2, prompt_tokens=100, hashes=()) for _ in range(3)]
    for seq in seqs:
        scheduler.queue(seq, engine, PrefixCache(16))

    def step() -> Step | None:
        planned = scheduler.next_step()
        if planned is not None:
            scheduler.finish_step(planned)
        return planned

    assert step() == (2 * engine.prefill_time(100), seqs[:2], True)  # one prefill for both, first token each
    assert admitted == seqs[:2] and list(scheduler.waiting) == seqs[2:]
    assert step() == (engine.step_time(2), seqs[:2], False)  # their second and last token
    assert step() == (engine.prefill_time(100), seqs[2:], True)
    assert step() == (engine.step_time(1), seqs[2:], False)
    assert step() is None
    assert scheduler.running == [] and all(s.finished and s.produced == 2 for s in seqs)


def test_a_decode_instance_never_prefills_and_its_first_token_comes_with_a_decode_step() -> None:
    engine = EngineModel(decode_base_s=0.004, decode_per_seq_s=0.001, max_batch=4)
    admitted: list[EngineSequence] = []
    scheduler = EngineScheduler(admitted.extend)
    seqs = [EngineSequence(completion_tokens=n, prompt_tokens=100, hashes=[1, 2]) for n in (1, 2)]
    for seq in seqs:
        scheduler.queue(seq, engine, None)  # a PD decode instance: the KV cache arrives computed
    first = scheduler.next_step()
    assert first == (engine.step_time(2), seqs, False)
    scheduler.finish_step(first)
    assert [s.produced for s in seqs] == [1, 1] and seqs[0].finished and not seqs[1].finished
    assert admitted == [] and [s.cached_tokens for s in seqs] == [0, 0]  # nothing looked up, nothing counted


async def test_max_batch_one_makes_a_second_request_wait(mock_backend_factory, session) -> None:
    # the first request runs 2 s (200 steps of 10 ms): the checks below, a few ms, all fall inside it
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=200, engine=engine))
    assert await metrics(session, backend) == (0, 0)
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")  # the first request runs
        second = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body(max_tokens=2)))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        assert await metrics(session, backend) == (1, 1)
        assert not second.done()  # queued: the first has ~2 s of tokens left
        rest = await first.read()
    assert rest.endswith(b"data: [DONE]\n\n")
    answer = await second
    assert answer["usage"]["completion_tokens"] == 2
    assert await metrics(session, backend) == (0, 0)


async def test_a_client_leaving_frees_its_batch_slot(mock_backend_factory, session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=100_000, engine=engine))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")
        second = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body(max_tokens=2)))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        first.close()  # ~1000 s of tokens left: only a freed slot lets the second run within 10 s
    answer = await asyncio.wait_for(second, timeout=10)
    assert answer["usage"]["completion_tokens"] == 2
    assert backend.disconnects == 1
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0 and b.requests_waiting == 0)


async def test_a_client_leaving_while_queued_leaves_the_queue(mock_backend_factory, session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await mock_backend_factory(behavior=MockBehavior(output_tokens=1000, engine=engine))
    async with session.post(backend.url + CHAT, json=chat_body(stream=True)) as first:
        assert (await first.content.readline()).startswith(b"data: ")
        impatient = asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body()))
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        impatient.cancel()  # it gives up while queued (a client timeout would race its own arrival)
        await asyncio.gather(impatient, return_exceptions=True)
        assert await backend.wait_for(lambda b: b.disconnects == 1 and b.requests_waiting == 0)
        assert backend.requests_running == 1
        first.close()
    assert await backend.wait_for(lambda b: b.requests_in_flight == 0)


async def test_closing_the_backend_ends_running_and_queued_requests(session) -> None:
    engine = fast_engine(max_batch=1, decode_base_s=0.01)
    backend = await MockBackend(behavior=MockBehavior(output_tokens=1000, engine=engine)).start()
    requests = [asyncio.ensure_future(post_json(session, backend.url + CHAT, chat_body())) for _ in range(2)]
    try:
        assert await backend.wait_for(lambda b: b.requests_waiting == 1)
        await asyncio.wait_for(backend.close(), timeout=10)
        for request in requests:
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(request, timeout=10)
        assert (backend.requests_in_flight, backend.requests_waiting, backend.disconnects) == (0, 0, 0)
    finally:
        for request in requests:
            request.cancel()
        await backend.close()
