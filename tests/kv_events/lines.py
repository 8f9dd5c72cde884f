"""Reading a /kv_events stream in a test: parsed lines, each wait bounded."""

from __future__ import annotations

import asyncio

import aiohttp

from fdrouter.kv_events.wire import Line, LineBuffer, parse_line


class Lines:
    """The parsed lines of one open ``GET /kv_events`` response, read on demand."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._buffer = LineBuffer()
        self._ready: list[Line] = []

    async def next(self, timeout: float = 10.0) -> Line:
        """The next line (blank ones skipped); TimeoutError if none comes in time, EOFError at the end."""
        async with asyncio.timeout(timeout):
            while not self._ready:
                chunk = await self.resp.content.readany()
                if not chunk:
                    raise EOFError("the stream ended")
                self._ready += [line for line in map(parse_line, self._buffer.feed(chunk)) if line is not None]
        return self._ready.pop(0)
