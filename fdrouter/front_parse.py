"""Reading generation requests for the lean front end: sans-IO (bytes in, decisions out).

The lean front end (``front.py``) serves ``POST /v1/chat/completions`` and ``POST
/v1/completions`` itself and hands every other request to aiohttp with the raw bytes it has
read. That needs to know where each request starts, so these pieces never let a parser read
past the end of the request at hand:

- ``route(buf)``: from the first bytes of a request, whether it is one the lean front serves
  (its request line starts with one of ``GENERATION_LINES``), one for aiohttp, or not known yet;
- ``RequestParser``: httptools' (llhttp's) request parser with aiohttp's limits, fed a head
  exactly up to its blank line (``head_end``) and a body exactly up to its last byte
  (Content-Length, or ``ChunkedEnd`` for chunked bodies);
- ``ChunkedEnd``: where a chunked body ends, found by walking its chunk sizes. llhttp checks
  the same bytes and is the authority on their validity: this only finds the boundary.

Limits are aiohttp's, so a request is refused alike by both front ends: 8190 bytes per header
field (``431``), 128 headers, a ``Host`` header in HTTP/1.1, no duplicate singleton headers
(``400``). One more, the lean front's own: a whole head over ``MAX_HEAD_BYTES`` is a ``431``.
"""

from __future__ import annotations

import httptools
from multidict import CIMultiDict

from .errors import HttpError, RouterError
from .validate import CHAT, COMPLETIONS

GENERATION_LINES = {b"POST /v1/chat/completions HTTP/1.": CHAT, b"POST /v1/completions HTTP/1.": COMPLETIONS}
"""Request-line prefixes of the requests the lean front serves, and their paths (a query string,
an absolute URI or another method: aiohttp serves it)."""

MAX_FIELD_BYTES = 8190
"""aiohttp's max_field_size (and max_line_size): a header's name and value together."""
MAX_HEADERS = 128
"""aiohttp's max_headers."""
MAX_HEAD_BYTES = 64 * 1024
"""A whole request head. nginx allows 4 x 8 KiB (large_client_header_buffers), Node.js 16 KiB
(--max-http-header-size): 64 KiB lets through any head those accept and bounds what one
connection can make the router hold before a request is even known."""
_MAX_CHUNK_LINE = 8190  # a chunk-size line with its extensions: no client needs more than a header field

# aiohttp's SINGLETON_HEADERS (aiohttp/_http_parser.pyx): a second one is a 400, so that no
# two parsers along the way can disagree on which one counts.
_SINGLETONS = frozenset({
    "content-length", "content-location", "content-range", "content-type", "etag", "host", "max-forwards",
    "server", "transfer-encoding", "user-agent",
})

AIOHTTP, UNKNOWN = "aiohttp", "unknown"

_NAMES: dict[bytes, tuple[str, str]] = {}  # a header name as sent -> (decoded, lower-cased): decoded once
_NAMES_KEPT = 512  # clients use a few dozen spellings; past this many, names are decoded each time


def route(buf: bytes) -> str:
    """Who serves the request whose first bytes are ``buf`` (leading CRLFs stripped): the path of a
    generation endpoint (the lean front), ``AIOHTTP``, or ``UNKNOWN`` until more bytes come."""
    for line, path in GENERATION_LINES.items():
        if buf.startswith(line):
            return path
    for line in GENERATION_LINES:
        if line.startswith(buf):
            return UNKNOWN  # "POST /v1/c" could still be either
    return AIOHTTP


def starts_generation(data: bytes) -> bool:
    """Whether ``data``, the first bytes of a request, carry a whole generation request line prefix."""
    if data[:1] == b"\r" or data[:1] == b"\n":
        data = data.lstrip(b"\r\n")
    return route(data) in (CHAT, COMPLETIONS)


def head_end(buf: bytes, tail: bytes) -> int:
    """Offset in ``buf`` just past the blank line ending a head, or -1; ``tail`` is up to the last
    3 bytes of the head fed before ``buf``. llhttp (strict) ends every head line with CRLF, so the
    first CRLFCRLF after the request line is the head's end."""
    if not tail:
        end = buf.find(b"\r\n\r\n")
        return -1 if end < 0 else end + 4
    end = (tail + buf).find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4 - len(tail)


class Rejected(Exception):
    """A request the parser refuses; ``error`` is the answer (400 or 431, OpenAI-shaped)."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.message)
        self.error = error


def bad_request(detail: str) -> Rejected:
    """A 400 for a malformed request, worded as aiohttp's front end words it."""
    return Rejected(HttpError(400, f"malformed HTTP request: {detail}"))


def too_large_head(message: str) -> Rejected:
    """A 431 for a head field, or a whole head, over the limits."""
    return Rejected(HttpError(431, message))


FIELD_TOO_LARGE = f"a request line or header field is over the router's limit of {MAX_FIELD_BYTES} bytes"
HEAD_TOO_LARGE = f"the request head is over the router's limit of {MAX_HEAD_BYTES} bytes"


class ChunkedEnd:
    """Finds the end of a chunked request body in the bytes after its head, fed piece by piece."""

    __slots__ = ("_state", "_left", "_line")

    _SIZE, _DATA, _TRAILER = 0, 1, 2

    def __init__(self) -> None:
        self._state = self._SIZE
        self._left = 0  # bytes of chunk data, then its CRLF, still to skip
        self._line = b""  # a size or trailer line cut by the end of a piece

    def feed(self, data: bytes) -> int:
        """Offset in ``data`` just past the body's last byte, or -1 if the body goes on."""
        i, n = 0, len(data)
        while i < n:
            if self._state == self._DATA:
                take = min(self._left, n - i)
                i += take
                self._left -= take
                if not self._left:
                    self._state = self._SIZE
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self._line += data[i:]
                if len(self._line) > _MAX_CHUNK_LINE:
                    raise bad_request("a chunk-size or trailer line is over 8190 bytes")
                return -1
            line, self._line = self._line + data[i:j], b""
            i = j + 1
            if self._state == self._TRAILER:
                if line == b"\r":  # the blank line after the last chunk (and its trailers)
                    return i
                continue
            try:
                size = int(line.partition(b";")[0], 16)
            except ValueError:
                raise bad_request("invalid chunk size") from None
            if size:
                self._state, self._left = self._DATA, size + 2  # the data and its CRLF
            else:
                self._state = self._TRAILER
        return -1


class RequestParser:
    """One connection's request parser (httptools) with aiohttp's limits; one request at a time.

    ``begin()`` before each request's head; then ``feed`` the head up to its end and the body up
    to its end. Raises ``Rejected`` for anything malformed or over a limit.
    """

    __slots__ = ("_parser", "headers", "head_done", "done", "http11", "keep_alive", "declared", "chunked",
                 "expect_continue", "parts", "size", "max_body", "too_large", "_count", "_seen")

    def __init__(self, max_body: int) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self.max_body = max_body
        self.begin()

    def begin(self) -> None:
        """Forget the previous request: the next bytes fed start a new one."""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.head_done = False
        self.done = False
        """The whole request, body included, has been parsed."""
        self.http11 = True
        self.keep_alive = True
        """What the request asked for (HTTP/1.1 unless ``Connection: close``; HTTP/1.0 only with keep-alive)."""
        self.declared: int | None = None
        """Content-Length, if the request has one."""
        self.chunked = False
        self.expect_continue = False
        self.parts: list[bytes] = []
        self.size = 0
        self.too_large = False
        """The body went over ``max_body``: what came after was dropped."""
        self._count = 0
        self._seen: set[str] = set()

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (never past the end of the current request)."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # an Upgrade request to a generation endpoint: the router speaks only HTTP/1.1
            raise bad_request("protocol upgrades are not supported on this endpoint") from None
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, Rejected):
                raise cause from None
            raise bad_request(str(exc) or "invalid request") from None

    def body(self) -> bytes:
        """The body as received (all of it once ``done``)."""
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # trailers of a chunked body: nothing the router reads
        self._count += 1
        if self._count > MAX_HEADERS:
            raise bad_request(f"more than {MAX_HEADERS} headers")
        if len(name) + len(value) > MAX_FIELD_BYTES:
            raise too_large_head(FIELD_TOO_LARGE)
        names = _NAMES.get(name)
        if names is None:
            names = name.decode("latin-1"), name.decode("latin-1").lower()
            if len(_NAMES) < _NAMES_KEPT:
                _NAMES[name] = names
        key, lower = names
        # as aiohttp decodes them, so both front ends hand the router the same strings
        text = value.rstrip(b" \t").decode("utf-8", "surrogateescape")
        if lower in _SINGLETONS:
            if lower in self._seen:
                raise bad_request(f"duplicate {key!r} header")
            self._seen.add(lower)
            if lower == "content-length":
                self.declared = int(text)  # llhttp checked it is digits only
            elif lower == "transfer-encoding":
                self.chunked = True  # llhttp refuses a request whose last coding is not chunked
        elif lower == "expect" and text.lower() == "100-continue":
            self.expect_continue = True
        self.headers.add(key, text)

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.http11 = parser.get_http_version() == "1.1"
        self.keep_alive = parser.should_keep_alive()
        if self.http11 and "host" not in self._seen:
            raise bad_request("missing 'Host' header in an HTTP/1.1 request")
        self.head_done = True
        if self.declared is not None and self.declared > self.max_body:
            self.too_large = True  # refused before a byte of it is kept

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.size += len(body)
        if self.size > self.max_body:
            self.too_large = True
            self.parts.clear()
            return
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.done = True


__all__ = [
    "AIOHTTP", "FIELD_TOO_LARGE", "GENERATION_LINES", "HEAD_TOO_LARGE", "MAX_FIELD_BYTES", "MAX_HEADERS", "MAX_HEAD_BYTES", "UNKNOWN",
    "ChunkedEnd", "Rejected", "RequestParser", "bad_request", "head_end", "route", "starts_generation", "too_large_head",
]
