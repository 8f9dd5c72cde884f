"""Request heads the lean front end refuses: over its limits (431) or malformed (400), always in the
OpenAI error shape with a request id, one log line and no traceback, and the connection closed."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .raw_http import RawClient, post

LINE = b"POST /v1/chat/completions HTTP/1.1\r\n"


async def _refused(cluster, request: bytes, caplog) -> tuple[int, dict]:
    c = await cluster(mixed=1)
    caplog.set_level(logging.DEBUG)
    client = await RawClient.connect(c.server.port)
    client.send(request)
    answer = await client.answer()
    assert answer.headers["content-type"] == "application/json" and answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"]
    assert await client.closed()
    assert c.backends[0].requests_total == 0
    records = [r for r in caplog.records if r.name.startswith("fdrouter") and
               (str(answer.status) in r.getMessage() or r.exc_info)]
    assert len(records) == 1 and records[0].exc_info is None and records[0].levelno <= logging.INFO
    return answer.status, answer.json()["error"]


async def test_a_header_field_over_8190_bytes_gets_431(cluster, caplog):
    status, error = await _refused(cluster, post(headers={"X-Big": "a" * 9000}), caplog)
    assert status == 431 and error["code"] == "http_431" and "8190" in error["message"]


async def test_a_head_over_64_kib_in_fields_each_within_the_limit_gets_431(cluster, caplog):
    headers = {f"X-Part-{i}": "b" * 4000 for i in range(20)}  # 80 KB
    status, error = await _refused(cluster, post(headers=headers), caplog)
    assert status == 431 and "65536" in error["message"]


async def test_a_head_that_never_ends_is_refused_at_64_kib_without_waiting_for_its_end(cluster, caplog):
    status, _ = await _refused(cluster, LINE + b"Host: r\r\n" + b"X-A: 1\r\n" * 10_000, caplog)
    assert status == 431


async def test_more_than_128_headers_get_400(cluster, caplog):
    status, error = await _refused(cluster, post(headers={f"X-{i}": "1" for i in range(130)}), caplog)
    assert status == 400 and "128" in error["message"]


@pytest.mark.parametrize("request_bytes, says", [
    (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "Host"),
    (post(headers={"Host": "again"}), "duplicate"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", ""),
    (b"POST /v1/chat/completions HTTP/1.1\nHost: r\n\n", ""),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nX-A: b\x00c\r\n\r\n", ""),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: gzip\r\n\r\n", ""),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ""),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", "upgrade"),
], ids=["no-host", "two-hosts", "two-lengths", "bare-lf", "nul-in-value", "unknown-coding", "length-and-chunked",
        "upgrade"])
async def test_a_malformed_head_gets_an_openai_shaped_400(cluster, caplog, request_bytes, says):
    status, error = await _refused(cluster, request_bytes, caplog)
    assert status == 400 and error["type"] == "invalid_request_error" and says in error["message"]


HEAD_BYTES = st.lists(st.sampled_from([
    b"Host: r", b"Content-Length: 2", b"Content-Length: x", b"Transfer-Encoding: chunked", b"Expect: 100-continue",
    b"Connection: close", b"X-Request-Id: \x7f", b":", b" ", b"\t", b"\x00", b"\r", b"\n", b"\r\n", b"a", b"{}",
    b"0\r\n\r\n", b"\xff",
]), max_size=12).map(b"".join)


@settings(max_examples=60)
@given(head=HEAD_BYTES, body=st.binary(max_size=40))
async def test_whatever_follows_a_generation_request_line_gets_an_answer_under_500_or_a_closed_connection(head, body):
    from fdrouter.testing.factories import mock_backends, routers

    async with mock_backends() as make_backend, routers() as make_router:
        backend = await make_backend()
        server = await make_router(client_header_timeout_secs=0.2, client_body_timeout_secs=0.2,
                                   client_keepalive_timeout_secs=0.2)
        await server.router.register(backend.register_info())
        client = await RawClient.connect(server.port)
        client.send(LINE + head + b"\r\n\r\n" + body)
        statuses = []
        try:
            while True:  # every answer on the connection until the router closes it or goes quiet
                statuses.append((await client.answer(timeout=2)).status)
        except (TimeoutError, ConnectionError, EOFError, ValueError, IndexError):
            pass
        client.close()
        assert all(status < 500 for status in statuses), statuses
