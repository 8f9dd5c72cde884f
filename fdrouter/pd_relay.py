"""Relaying one PD attempt's decode answer when the request may be rescheduled (the I/O of ``pd_reschedule``).

``relay_attempt`` stands in for ``Sink.relay`` on such a request. It returns the status sent
when the answer is complete, or None when the attempt was preempted: the router then runs the
next attempt.

- A non-streamed answer is read (at most ``--max-response-bytes``, as the sink would) and, if
  complete, handed to ``sink.relay`` as a ``BufferedAnswer``: the client gets it the way it gets
  any answer (headers, caps, slow-client protection), whatever the sink.
- A stream stays open across attempts: the client's response is prepared once (when there is
  something to send, so an attempt that fails before that can still be retried elsewhere),
  written attempt after attempt and ended once. This needs the aiohttp sink (``ClientSink``);
  a write that makes no progress for ``--client-write-timeout-secs`` cuts the client off, as
  in ``ClientSink.relay``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from contextlib import aclosing
from typing import Any, cast

from aiohttp import web

from .errors import ClientDisconnected, UpstreamError
from .generation_pool import Response
from .pd_reschedule import Reschedule
from .pd_splice import StreamSplice
from .relay import ClientSink, relayed_headers
from .sink import Sink

_SSE = "text/event-stream"


class BufferedAnswer:
    """A finished upstream answer with a new body: what ``Sink.relay`` reads of a ``Response``."""

    __slots__ = ("_upstream", "_body", "status")

    def __init__(self, upstream: Any, body: bytes) -> None:
        self._upstream = upstream
        self._body = body
        self.status = upstream.status

    def header(self, name: str, default: str = "") -> str:
        """As ``Response.header``."""
        return cast(str, self._upstream.header(name, default))

    def header_items(self) -> list[tuple[str, str]]:
        """As ``Response.header_items`` (``Content-Length`` is the sink's to set)."""
        return cast(list, self._upstream.header_items())

    @property
    def content_type(self) -> str:
        """As ``Response.content_type``."""
        return cast(str, self._upstream.content_type)

    async def read(self) -> bytes:
        """The new body."""
        return self._body

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The new body, in one piece."""
        yield self._body


def streams_supported(sink: Sink) -> bool:
    """Whether a stream to ``sink`` can be kept open across attempts (the aiohttp sink)."""
    return isinstance(sink, ClientSink)


async def relay_attempt(sink: Sink, state: Reschedule, upstream: Response) -> int | None:
    """Relay one attempt's 2xx decode answer to ``sink``; None if the attempt was preempted."""
    splice = state.splice
    if splice is not None and upstream.content_type == _SSE:
        assert isinstance(sink, ClientSink)  # Reschedule.for_request makes a splice only for one
        return await _relay_stream(sink, state, splice, upstream)
    if sink.prepared:
        raise UpstreamError(f"decode instance {sink.instance} answered a resumed stream with {upstream.content_type}")
    parts, size = [], 0
    async with aclosing(upstream.iter_chunks()) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > state.max_body:
                raise UpstreamError(f"the instance's answer is over --max-response-bytes ({state.max_body} bytes); "
                                    "ask for a stream for answers this large")
            parts.append(chunk)
    out = state.merge.feed(b"".join(parts))
    if out is None:
        return None
    return await sink.relay(cast(Response, BufferedAnswer(upstream, out)))


async def _relay_stream(sink: ClientSink, state: Reschedule, splice: StreamSplice, upstream: Response) -> int | None:
    splice.begin()
    async with aclosing(upstream.iter_chunks()) as chunks:
        async for chunk in chunks:
            out = splice.feed(chunk)
            if out:
                await _write(sink, state, upstream, out)
        out = splice.end()
        if out:
            await _write(sink, state, upstream, out)
    if splice.rescheduled:
        return None
    writer = state.client_stream or await _start(sink, state, upstream)
    await writer.write(writer.response.write_eof())
    writer.stop()
    sink.finished = True
    return writer.response.status


class _StreamWriter:
    """Writes to a client stream kept open across attempts, watched by one timer for all of them:
    a write that makes no progress for ``--client-write-timeout-secs`` aborts the client's
    connection (ClientSink's watchdog; a timer per write would cost ~6 µs each)."""

    __slots__ = ("response", "_sink", "_task", "_since", "_timer")

    def __init__(self, sink: ClientSink, response: web.StreamResponse) -> None:
        self.response = response
        self._sink = sink
        self._task = asyncio.current_task()
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        if sink.write_timeout:
            self._timer = asyncio.get_running_loop().call_later(sink.write_timeout, self._check)

    async def write(self, step: Awaitable[Any]) -> None:
        """Await one write (``response.write(...)``, ``prepare``, ``write_eof``) under the watchdog."""
        self._since = asyncio.get_running_loop().time()
        try:
            await step
        except ConnectionResetError as exc:  # includes aiohttp's ClientConnectionResetError on writes
            self.stop()
            raise ClientDisconnected("client disconnected during the stream") from exc
        self._since = None

    def stop(self) -> None:
        """No more writes: the watchdog ends."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._sink.finished or (self._task is not None and self._task.done()):
            return  # the request is over (ended by an error between attempts, say): nothing to watch
        loop = asyncio.get_running_loop()
        limit = self._sink.write_timeout
        since = self._since
        if since is not None and loop.time() - since >= limit:
            transport = self._sink.request.transport
            if transport is not None:
                transport.abort()  # the write fails, the handler ends, the upstream leg is closed
            return
        self._timer = loop.call_later(limit if since is None else limit - (loop.time() - since), self._check)


async def _start(sink: ClientSink, state: Reschedule, upstream: Response) -> _StreamWriter:
    """The client's status line and headers, from the first attempt that has something to send."""
    headers = relayed_headers(upstream)
    headers.setdefault("content-type", _SSE)
    headers.update(sink.headers)
    headers.setdefault("cache-control", "no-cache")
    headers.setdefault("x-accel-buffering", "no")
    response = sink.response = web.StreamResponse(status=upstream.status, headers=headers)
    writer = state.client_stream = _StreamWriter(sink, response)
    await writer.write(response.prepare(sink.request))
    sink.first_byte_at = asyncio.get_running_loop().time()
    return writer


async def _write(sink: ClientSink, state: Reschedule, upstream: Response, data: bytes) -> None:
    writer = state.client_stream or await _start(sink, state, upstream)
    await writer.write(writer.response.write(data))


__all__ = ["BufferedAnswer", "relay_attempt", "streams_supported"]
