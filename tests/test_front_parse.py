"""The lean front end's sans-IO parsing: who serves a request, where a head and a chunked body end,
and the limits its parser shares with aiohttp's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fdrouter.front_parse import (
    AIOHTTP,
    MAX_HEAD_BYTES,
    UNKNOWN,
    ChunkedEnd,
    Rejected,
    RequestParser,
    head_end,
    route,
    starts_generation,
)


@pytest.mark.parametrize("first_bytes, who", [
    (b"POST /v1/chat/completions HTTP/1.1\r\n", "/v1/chat/completions"),
    (b"POST /v1/completions HTTP/1.0\r\n", "/v1/completions"),
    (b"POST /v1/c", UNKNOWN),
    (b"P", UNKNOWN),
    (b"POST /v1/chat/completions?stream=1 HTTP/1.1\r\n", AIOHTTP),
    (b"POST /v1/chat/completionsX HTTP/1.1\r\n", AIOHTTP),
    (b"GET /v1/chat/completions HTTP/1.1\r\n", AIOHTTP),
    (b"post /v1/chat/completions HTTP/1.1\r\n", AIOHTTP),
    (b"POST http://router/v1/chat/completions HTTP/1.1\r\n", AIOHTTP),
    (b"GET /health HTTP/1.1\r\n", AIOHTTP),
    (b"\x16\x03\x01", AIOHTTP),  # a TLS hello
])
def test_a_request_is_routed_by_its_first_bytes(first_bytes, who):
    assert route(first_bytes) == who


def test_a_generation_request_line_counts_after_empty_lines_and_only_when_whole():
    assert starts_generation(b"\r\n\r\nPOST /v1/completions HTTP/1.1\r\nHost: r\r\n\r\n")
    assert not starts_generation(b"POST /v1/compl")
    assert not starts_generation(b"GET /metrics HTTP/1.1\r\n\r\n")


def test_the_end_of_a_head_is_found_also_when_its_blank_line_straddles_two_reads():
    head = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\n\r\n"
    assert head_end(head + b"{}", b"") == len(head)
    assert head_end(b"\n{}", b"r\r\n\r") == 1
    assert head_end(b"\r\n{}", b"r\r\n") == 2
    assert head_end(b"Host: r\r\n", b"") == -1


ENCODED_BODIES = st.builds(
    lambda body, sizes, ext, trailers: (body, sizes, ext, trailers),
    st.binary(max_size=400), st.lists(st.integers(1, 64), min_size=1, max_size=8), st.booleans(),
    st.sampled_from(["", "X-Sum: 1\r\n", "A: b\r\nC: d\r\n"]),
)


def _encode(body: bytes, sizes: list[int], ext: bool, trailers: str) -> bytes:
    out, i, n = [], 0, 0
    while i < len(body):
        piece = body[i:i + sizes[n % len(sizes)]]
        out.append(b"%X%s\r\n%s\r\n" % (len(piece), b";a=1" if ext else b"", piece))
        i, n = i + len(piece), n + 1
    return b"".join(out) + b"0\r\n" + trailers.encode() + b"\r\n"


@given(case=ENCODED_BODIES, cuts=st.lists(st.integers(0, 2000), max_size=6),
       after=st.sampled_from([b"", b"POST / HTTP/1.1\r\n\r\n", b"0\r\n\r\n", b"\r\n"]))
def test_the_end_of_a_chunked_body_is_found_wherever_the_reads_cut_it(case, cuts, after):
    encoded = _encode(*case)
    stream = encoded + after
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    finder, found = ChunkedEnd(), -1
    for start, stop in zip(points, points[1:], strict=False):
        end = finder.feed(stream[start:stop])
        if end >= 0:
            found = start + end
            break
    assert found == len(encoded)
    # and llhttp, the authority on the bytes, agrees that the request ends there
    parser = RequestParser(max_body=1 << 20)
    parser.feed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n")
    parser.feed(encoded)
    assert parser.done and parser.body() == case[0]


def test_a_chunk_size_that_is_not_hex_or_a_line_that_never_ends_is_refused():
    with pytest.raises(Rejected):
        ChunkedEnd().feed(b"zz\r\n")
    with pytest.raises(Rejected):
        ChunkedEnd().feed(b"1;" + b"e" * 9000)


def _parsed(head: bytes, max_body: int = 1000) -> RequestParser:
    parser = RequestParser(max_body)
    parser.feed(head)
    return parser


def test_headers_are_decoded_as_aiohttp_decodes_them_and_looked_up_case_insensitively():
    parser = _parsed("POST /v1/completions HTTP/1.1\r\nHost: r\r\nX-Session-Id: Zoë  \r\n\r\n".encode())
    assert parser.headers.get("x-session-id") == "Zoë"  # UTF-8, trailing blanks stripped
    raw = _parsed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer \xff\r\n\r\n")
    assert raw.headers["authorization"] == "Bearer \udcff"  # not UTF-8: kept byte for byte (surrogateescape)


def test_the_parser_knows_keep_alive_expect_and_framing_from_the_head():
    parser = _parsed(b"POST /v1/completions HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
                     b"Expect: 100-continue\r\n\r\n")
    assert (parser.http11, parser.keep_alive, parser.declared, parser.chunked) == (False, True, 5, False)
    assert parser.expect_continue and parser.head_done and not parser.done
    parser.feed(b"hello")
    assert parser.done and parser.body() == b"hello"
    parser.begin()  # the next request on the same connection
    parser.feed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
    assert parser.done and parser.http11 and not parser.keep_alive and parser.body() == b""


def test_a_body_over_the_limit_is_dropped_as_it_comes_and_a_declared_one_is_never_kept():
    parser = _parsed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n", max_body=10)
    parser.feed(b"8\r\n12345678\r\n")
    assert not parser.too_large
    parser.feed(b"8\r\n12345678\r\n")
    assert parser.too_large and parser.parts == []
    declared = _parsed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 11\r\n\r\n", max_body=10)
    assert declared.too_large
    declared.feed(b"x" * 11)
    assert declared.done and declared.parts == []


@pytest.mark.parametrize("head, status", [
    (b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nX: " + b"a" * 8190 + b"\r\n\r\n", 431),
    (b"POST /v1/completions HTTP/1.1\r\nHost: r\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(128))
     + b"\r\n", 400),
    (b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n", 400),
    (b"POST /v1/completions HTTP/1.1\r\n\r\n", 400),
])
def test_heads_over_aiohttps_limits_or_against_its_rules_are_refused_alike(head, status):
    with pytest.raises(Rejected) as refused:
        _parsed(head)
    assert refused.value.error.status == status


def test_a_head_at_the_limits_is_accepted():
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400) for i in range(126))  # 127 headers with Host
    head = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nX-Max: " + b"a" * (8190 - 5) + b"\r\n" + fields + b"\r\n"
    assert len(head) < MAX_HEAD_BYTES
    assert _parsed(head).head_done


def test_llhttp_still_refuses_what_the_chunk_walk_would_misread():
    # the walk reads int("0x1", 16) as 1; llhttp, which sees the same bytes first, refuses them
    parser = _parsed(b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(Rejected):
        parser.feed(b"0x1\r\na\r\n0\r\n\r\n")
