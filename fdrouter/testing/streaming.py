"""One streamed (SSE) answer of the mock backend: paced, and broken where the behavior says.

A chunk per token, a finishing chunk (with usage if asked), ``[DONE]``. Paced by the engine
(each token when its ``EngineSequence`` has it) or by ``MockBehavior.token_delay``; cut with a
TCP reset after ``reset_after_chunks`` chunks, or silent after ``stall_after_chunks``. A
preempted attempt (FastDeploy's PD reschedule) ends with ``finish_reason: "pd_reschedule"``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import openai_shapes as shapes
from .behavior import MockBehavior
from .scheduler import EngineSequence

__all__ = ["write_stream"]


async def write_stream(
    request: web.BaseRequest,
    response: web.StreamResponse,
    *,
    head: str,
    chat: bool,
    n: int,
    usage_prompt_tokens: int | None,
    cached: int,
    seq: EngineSequence | None,
    behavior: MockBehavior,
    stopping: asyncio.Event,
    start: int = 0,
    finish_reason: str = "length",
    prompt_ids: list[int] | None = None,
) -> None:
    """Write `n` token chunks, the finishing chunk and [DONE] to the prepared `response`.

    The tokens are ``tok<start> .. tok<start+n-1>`` (`start` > 0: a rescheduled request going on);
    the finishing chunk says `finish_reason`; `prompt_ids` given (``return_token_ids``): each chunk
    carries its token ids, the first one the prompt's too.

    `head` is ``openai_shapes.chunk_head(...)`` of this stream. Usage is sent when
    `usage_prompt_tokens` is not None (the client set stream_options.include_usage), with
    `cached` tokens, or the engine's count when `seq` is given. A stall lasts until `stopping`
    is set (the server closes) or the handler is cancelled (the client left). Raises
    ConnectionResetError when the client is gone.
    """
    delay = 0.0 if seq is not None else behavior.token_delay
    reset_after = behavior.reset_after_chunks
    stall_after = behavior.stall_after_chunks
    for i in range(n):
        if reset_after is not None and i >= reset_after:
            return _reset(request)
        if stall_after is not None and i >= stall_after:
            await stopping.wait()
            return
        if seq is not None:
            await seq.wait(i + 1)
            if seq.failed:
                return _reset(request)
        elif delay > 0:  # token chunks take time; the finishing chunk doesn't
            await asyncio.sleep(delay)
        await response.write(shapes.token_chunk(head, chat, start + i, role=i == 0, prompt_ids=prompt_ids))
    if seq is not None:
        await seq.wait(n + 1)  # n == 0: the prefill still has to happen
        if seq.failed:
            return _reset(request)
        cached = seq.cached_tokens
    if reset_after is not None and n >= reset_after:
        return _reset(request)
    if stall_after is not None and n >= stall_after:
        await stopping.wait()
        return
    usage = None if usage_prompt_tokens is None else shapes.usage(usage_prompt_tokens, n, cached)
    await response.write(shapes.last_chunk(head, chat, usage, finish_reason))
    if reset_after is not None:  # reset_after >= all chunks: still no [DONE]
        return _reset(request)
    if stall_after is not None:
        await stopping.wait()
        return
    await response.write(shapes.DONE)


def _reset(request: web.BaseRequest) -> None:
    # abort() sends RST without flushing; aiohttp then fails write_eof quietly (a ConnectionError).
    if request.transport is not None:
        request.transport.abort()
