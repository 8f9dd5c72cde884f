"""Relaying one PD attempt's decode answer when the request may be rescheduled (the I/O of ``pd_reschedule``).

``relay_attempt`` stands in for ``Sink.relay`` on such a request. It returns the status sent
when the answer is complete, or None when the attempt was preempted: the router then runs the
next attempt.

- A non-streamed answer is read (at most ``--max-response-bytes``, as the sink would) and, if
  complete, handed to ``sink.relay`` as a ``BufferedAnswer``: the client gets it the way it gets
  any answer (headers, caps, slow-client protection), whatever the sink.
- A stream stays open across attempts: the client's answer is started once (when there is
  something to send, so an attempt that fails before that can still be retried elsewhere),
  written attempt after attempt and ended once, through the sink's ``open_stream``/``send``/
  ``end_stream`` (either front end's sink): the same headers, and the sink's one write watchdog
  for the whole stream, as in ``Sink.relay``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast

from .errors import UpstreamError
from .generation_pool import Response
from .pd_reschedule import Reschedule
from .pd_splice import StreamSplice
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


async def relay_attempt(sink: Sink, state: Reschedule, upstream: Response) -> int | None:
    """Relay one attempt's 2xx decode answer to ``sink``; None if the attempt was preempted."""
    splice = state.splice
    if splice is not None and upstream.content_type == _SSE:
        return await _relay_stream(sink, splice, upstream)
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


async def _relay_stream(sink: Sink, splice: StreamSplice, upstream: Response) -> int | None:
    splice.begin()
    async with aclosing(upstream.iter_chunks()) as chunks:
        async for chunk in chunks:
            out = splice.feed(chunk)
            if out:
                await _write(sink, upstream, out)
        out = splice.end()
        if out:
            await _write(sink, upstream, out)
    if splice.rescheduled:
        return None
    if not sink.prepared:
        await sink.open_stream(upstream)
    return await sink.end_stream()


async def _write(sink: Sink, upstream: Response, data: bytes) -> None:
    if not sink.prepared:  # the client's status line and headers, from the first attempt with something to send
        await sink.open_stream(upstream)
    await sink.send(data)


__all__ = ["BufferedAnswer", "relay_attempt"]
