"""Relaying one PD attempt's decode answer when the request may be rescheduled (the I/O of ``pd_reschedule``).

``relay_attempt`` stands in for ``ClientSink.relay`` on such a request. It returns the client's
response when the answer is complete, or None when the attempt was preempted: the router then
runs the next attempt, and a started stream stays open for it (no ``write_eof`` in between).
Like ``ClientSink.relay``, it sends the client nothing before it has something to send, so an
attempt that fails before that can still be retried elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

from aiohttp import web

from .errors import ClientDisconnected, UpstreamError
from .generation_pool import Response
from .pd_reschedule import Reschedule
from .pd_splice import StreamSplice
from .relay import ClientSink

_SSE = "text/event-stream"


async def relay_attempt(sink: ClientSink, state: Reschedule, upstream: Response) -> web.StreamResponse | None:
    """Relay one attempt's 2xx decode answer to ``sink``; None if the attempt was preempted."""
    splice = state.splice
    if splice is not None and upstream.content_type == _SSE:
        return await _relay_stream(sink, splice, upstream)
    if sink.prepared:
        raise UpstreamError(f"decode instance {sink.instance} answered a resumed stream with {upstream.content_type}")
    body = await upstream.read()
    out = state.merge.feed(body)
    if out is None:
        return None
    sink.finished = True
    sink.first_byte_at = asyncio.get_running_loop().time()
    return web.Response(body=out, status=upstream.status,
                        headers={"Content-Type": upstream.header("content-type", "application/json"), **sink.headers})


async def _relay_stream(sink: ClientSink, splice: StreamSplice, upstream: Response) -> web.StreamResponse | None:
    splice.begin()
    async with aclosing(cast("AsyncGenerator[bytes, None]", upstream.iter_chunks())) as chunks:
        async for chunk in chunks:
            out = splice.feed(chunk)
            if out:
                await _write(sink, upstream, out)
        out = splice.end()
        if out:
            await _write(sink, upstream, out)
    if splice.rescheduled:
        return None
    response = sink.response if sink.response is not None else await _prepare(sink, upstream)
    try:
        await response.write_eof()
    except ConnectionResetError as exc:
        raise ClientDisconnected("client disconnected at the end of the stream") from exc
    sink.finished = True
    return response


async def _prepare(sink: ClientSink, upstream: Response) -> web.StreamResponse:
    response = web.StreamResponse(
        status=upstream.status,
        headers={"Content-Type": upstream.header("content-type", _SSE), "Cache-Control": "no-cache",
                 "X-Accel-Buffering": "no", **sink.headers},
    )
    sink.response = response
    try:
        await response.prepare(sink.request)
    except ConnectionResetError as exc:
        raise ClientDisconnected("client disconnected before the stream started") from exc
    sink.first_byte_at = asyncio.get_running_loop().time()
    return response


async def _write(sink: ClientSink, upstream: Response, data: bytes) -> None:
    response = sink.response if sink.prepared else await _prepare(sink, upstream)
    assert response is not None
    try:
        await response.write(data)
    except ConnectionResetError as exc:  # includes aiohttp's ClientConnectionResetError on writes
        raise ClientDisconnected("client disconnected during the stream") from exc


__all__ = ["relay_attempt"]
