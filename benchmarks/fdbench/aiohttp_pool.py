"""aiohttp's ClientSession behind the router's generation-pool interface, to re-measure why it is not used.

fdrouter's generation traffic goes through a hand-written HTTP/1.1 pool
(``fdrouter/generation_pool.py``), because profiling once showed a third of the router's CPU
in aiohttp's client machinery. A reason like that ages with every aiohttp release, so the
benchmark measures it on every run: ``AiohttpPool`` offers what ``fdrouter.upstream``'s
``UpstreamClient`` uses of ``Http1Pool`` (``post``, ``acquired``, ``closed``, ``close``) on one
long-lived ``aiohttp.ClientSession`` sized and timed from the same settings, and
``aiohttp_generation_pool()`` makes ``UpstreamClient`` build it instead. The router is not
changed; ``benchmarks/fdrouter_aiohttp_pool.py`` runs ``fdrouter serve`` that way.

The session is used the way a careful proxy would: one connector, no cookie jar, no
decompression, URLs parsed once per instance and path. The differences from ``Http1Pool``
that remain are aiohttp's own (and are what is measured): its request and response objects,
default headers, and its timeout handling. Behaviour on failures is close, not identical:
aiohttp does not retry a POST on a stale keep-alive connection, and a first-byte timeout
surfaces as a plain ``TimeoutError`` (the router still answers 504).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
from yarl import URL


class AiohttpResponse:
    """An instance's answer from aiohttp, read through the interface of ``generation_pool.Response``."""

    __slots__ = ("status", "on_done", "_resp", "_pool", "_done")

    def __init__(self, resp: aiohttp.ClientResponse, pool: AiohttpPool) -> None:
        self.status = resp.status
        self.on_done: Callable[[], None] | None = None  # called when the body is all in, or on settle
        self._resp = resp
        self._pool = pool
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (name case-insensitive)."""
        return self._resp.headers.get(name, default)

    @property
    def content_type(self) -> str:
        """The media type without parameters, ``""`` without the header (aiohttp would say octet-stream)."""
        return self.header("content-type").partition(";")[0].strip().lower()

    @property
    def drained(self) -> bool:
        """Never known ahead with aiohttp: the end of the body shows as the end of the iteration."""
        return False

    async def read(self) -> bytes:
        """The whole remaining body."""
        return await self._resp.read()

    def header_items(self) -> list[tuple[str, str]]:
        """Every header, in order, names lower-case."""
        return [(name.lower(), value) for name, value in self._resp.headers.items()]

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, whatever is buffered coalesced into one chunk."""
        async for chunk in self._resp.content.iter_any():
            yield chunk
        self._notify_done()

    def _notify_done(self) -> None:
        if self.on_done is not None:
            done, self.on_done = self.on_done, None
            done()

    def release(self) -> None:
        """Give the connection back: aiohttp keeps it alive only if the body was read whole."""
        if self._settle():
            self._resp.release()

    def close(self) -> None:
        """Close the connection now, so the instance sees the client go away."""
        if self._settle():
            self._resp.close()

    def _settle(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._notify_done()
        self._pool.acquired -= 1
        return True


class AiohttpPool:
    """``Http1Pool``'s constructor and interface on one ``aiohttp.ClientSession``.

    Timeouts of None or 0 are off, as in ``Http1Pool``: ``total_timeout`` bounds the whole
    answer, ``first_byte_timeout`` the wait for its headers, ``idle_timeout`` each read.
    """

    def __init__(
        self,
        *,
        limit: int,
        limit_per_host: int = 0,
        keepalive_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        total_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host,
                                         keepalive_timeout=keepalive_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=total_timeout or None, sock_connect=connect_timeout or None,
                                          sock_read=idle_timeout or None),
            auto_decompress=False,  # the router relays bytes; Http1Pool does not decompress either
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._first_byte_timeout = first_byte_timeout or None
        self._urls: dict[tuple[str, int, bytes], URL] = {}
        self.acquired = 0
        """Responses handed out and not yet released or closed."""

    async def post(self, host: str, port: int, target: bytes, body: bytes,
                   headers: bytes = b"") -> AiohttpResponse:
        """Send ``POST target`` with a JSON body; returns once the answer's headers are in.

        ``headers`` are extra header lines, each ending in CRLF (the router's request id).
        """
        if self._session.closed:
            raise RuntimeError("AiohttpPool is closed")
        key = (host, port, target)
        url = self._urls.get(key)
        if url is None:
            host_part = f"[{host}]" if ":" in host else host
            url = self._urls[key] = URL(f"http://{host_part}:{port}{target.decode()}", encoded=True)
        request_headers = {"Content-Type": "application/json"}
        for line in headers.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                request_headers[name.strip()] = value.strip()
        async with asyncio.timeout(self._first_byte_timeout):
            resp = await self._session.post(url, data=body, headers=request_headers)
        self.acquired += 1
        return AiohttpResponse(resp, self)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._session.closed

    async def close(self) -> None:
        """Close the session and every connection; later requests raise. Idempotent."""
        await self._session.close()


@contextlib.contextmanager
def aiohttp_generation_pool() -> Iterator[None]:
    """While inside, ``fdrouter.upstream.UpstreamClient`` builds an ``AiohttpPool`` for generation traffic."""
    from fdrouter import upstream

    if not hasattr(upstream, "Http1Pool"):
        raise RuntimeError("fdrouter.upstream no longer builds its generation pool from `Http1Pool`: "
                           "update benchmarks/fdbench/aiohttp_pool.py to swap in AiohttpPool")
    original = upstream.Http1Pool
    upstream.Http1Pool = AiohttpPool  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        upstream.Http1Pool = original  # type: ignore[misc]


__all__ = ["AiohttpPool", "AiohttpResponse", "aiohttp_generation_pool"]
