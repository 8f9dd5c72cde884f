"""A raw HTTP/1.1 client for the front-end tests: bytes out exactly as written, answers read strictly.

Every read is bounded (``TIMEOUT``), so a regression shows as a failure, never as a hang.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

TIMEOUT = 10.0

CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


def post(body: bytes = BODY, *, path: str = CHAT, version: str = "1.1", headers: dict[str, str] | None = None,
         length: bool = True) -> bytes:
    """A POST request's bytes (``Host`` and ``Content-Length`` unless told otherwise)."""
    lines = [f"POST {path} HTTP/{version}", "Host: router"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(path: str = "/health", headers: dict[str, str] | None = None) -> bytes:
    """A GET request's bytes."""
    lines = [f"GET {path} HTTP/1.1", "Host: router", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, sizes: tuple[int, ...] = (7, 1, 30), trailers: str = "") -> bytes:
    """``body`` in chunked transfer coding, cut in pieces of ``sizes`` (cycled), with chunk extensions."""
    out, i, n = [], 0, 0
    while i < len(body):
        size = sizes[n % len(sizes)]
        piece = body[i:i + size]
        out.append(b"%x;ext=%d\r\n%b\r\n" % (len(piece), n, piece))
        i, n = i + size, n + 1
    return b"".join(out) + b"0\r\n" + trailers.encode() + b"\r\n"


@dataclass
class Answer:
    """One HTTP answer as it came: status, headers (names lower-cased), body (de-chunked)."""

    status: int
    headers: dict[str, str]
    body: bytes
    chunked: bool = False
    raw_head: bytes = field(default=b"", repr=False)

    def json(self) -> dict:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def served_by_aiohttp(self) -> bool:
        """aiohttp's server names itself in every answer; the lean front end sends no ``Server``."""
        return "server" in self.headers


class RawClient:
    """One TCP connection to a server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        """Open a connection to 127.0.0.1:``port``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        """Write bytes as they are."""
        self.writer.write(data)

    async def head(self, timeout: float = TIMEOUT) -> tuple[int, dict[str, str], bytes]:
        """The next answer's status line and headers (an interim 1xx answer included)."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers, raw

    async def answer(self, timeout: float = TIMEOUT) -> Answer:
        """The next final answer, its body read by its framing (Content-Length, chunked, or until EOF)."""
        status, headers, raw = await self.head(timeout)
        while 100 <= status < 200:
            status, headers, raw = await self.head(timeout)
        if "content-length" in headers:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), timeout)
            return Answer(status, headers, body, raw_head=raw)
        if headers.get("transfer-encoding") == "chunked":
            return Answer(status, headers, await asyncio.wait_for(self._chunks(), timeout), chunked=True, raw_head=raw)
        return Answer(status, headers, await asyncio.wait_for(self.reader.read(), timeout), raw_head=raw)

    async def _chunks(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers from the router
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            assert await self.reader.readexactly(2) == b"\r\n"

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server closed the connection (EOF or reset); whatever came first is dropped."""

        async def until_eof() -> None:
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionResetError:
                pass

        await asyncio.wait_for(until_eof(), timeout)
        return True

    async def nothing_within(self, seconds: float) -> bool:
        """True if no byte and no EOF arrives within ``seconds`` (the connection is open and quiet)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected silence, got {data!r}")

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


__all__ = ["BODY", "CHAT", "STREAM_BODY", "Answer", "RawClient", "chunked", "get", "post"]
