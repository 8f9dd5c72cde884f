"""A request's life on the lean front end: its id (answers and log lines), release when the client
goes away, graceful drain at shutdown, and errors that never reach a client as tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
import re

from fdrouter.logs import RequestIdFilter
from fdrouter.testing import wait_until

from .conftest import lean_connections
from .raw_http import STREAM_BODY, RawClient, post


async def test_the_clients_request_id_is_on_its_answer_and_an_invalid_one_is_replaced(cluster):
    c = await cluster(mixed=1, api_key="sesame")
    client = await RawClient.connect(c.server.port)
    client.send(post(headers={"X-Request-Id": "trace-7"}))  # no key: 401, with the client's id
    answer = await client.answer()
    assert answer.status == 401 and answer.headers["x-request-id"] == "trace-7"
    client.send(post(headers={"X-Request-Id": "two words", "Authorization": "Bearer sesame"}))
    answer = await client.answer()
    assert answer.status == 200 and re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
    assert c.backends[0].received_headers[-1]["X-Request-Id"] == answer.headers["x-request-id"]
    client.close()


async def test_log_lines_of_a_request_carry_its_id(cluster, caplog):
    gate = asyncio.Event()
    c = await cluster(mixed=1, behavior={"gate": gate}, max_concurrent_requests=1, queue_size=0)
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO)
    first, second = await RawClient.connect(c.server.port), await RawClient.connect(c.server.port)
    first.send(post(headers={"X-Request-Id": "holds-the-slot"}))
    assert await wait_until(lambda: c.backends[0].requests_in_flight == 1)
    second.send(post(headers={"X-Request-Id": "turned-away"}))
    answer = await second.answer()
    assert answer.status == 429 and answer.headers["retry-after"]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("rejected")]
    assert record.request_id == "turned-away"
    gate.set()
    assert (await first.answer()).status == 200
    first.close()
    second.close()


async def test_a_client_that_leaves_while_the_instance_has_not_answered_closes_the_upstream(cluster):
    c = await cluster(mixed=1, behavior={"hang_before_headers": True})
    backend = c.backends[0]
    client = await RawClient.connect(c.server.port)
    client.send(post())
    assert await wait_until(lambda: backend.requests_in_flight == 1)
    client.close()
    assert await wait_until(lambda: backend.disconnects == 1), "the instance never saw the client go"
    assert await wait_until(lambda: c.server.router.in_flight() == 0)


async def test_a_client_that_leaves_mid_stream_closes_the_upstream_long_before_the_stream_ends(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 1000, "token_delay": 0.05})  # a 50 s stream
    backend = c.backends[0]
    client = await RawClient.connect(c.server.port)
    client.send(post(STREAM_BODY))
    status, headers, _ = await client.head()
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    client.close()
    assert await wait_until(lambda: backend.disconnects == 1, timeout=10)
    assert await wait_until(lambda: c.server.router.in_flight() == 0)


async def test_a_client_that_leaves_half_way_through_its_upload_leaves_nothing_behind(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\n{\"mess")
    assert await wait_until(lambda: lean_connections(c.server) and lean_connections(c.server)[0]._task is not None)
    client.close()
    assert await wait_until(lambda: not lean_connections(c.server))
    assert c.backends[0].requests_total == 0


async def test_a_shutdown_lets_a_running_stream_end_and_closes_idle_connections_at_once(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 20, "token_delay": 0.05})  # a ~1 s stream
    c.server.shutdown_timeout = 20  # the fixture's 2 s would cut a stream slowed down by a busy machine
    streaming, idle = await RawClient.connect(c.server.port), await RawClient.connect(c.server.port)
    idle.send(post(json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()))
    assert (await idle.answer()).status == 200
    streaming.send(post(STREAM_BODY))
    status, _, _ = await streaming.head()
    assert status == 200
    closing = asyncio.create_task(c.server.close())
    assert await idle.closed()  # at once: it had no request in progress
    assert c.backends[0].requests_in_flight == 1 and not closing.done()  # while the stream still runs
    body = await asyncio.wait_for(streaming.reader.read(), 20)  # to the end, then EOF
    assert body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    await asyncio.wait_for(closing, 20)


async def test_once_a_shutdown_started_a_keep_alive_connection_takes_no_new_request(cluster):
    gate = asyncio.Event()
    c = await cluster(mixed=1, behavior={"gate": gate})
    c.server.shutdown_timeout = 20
    client = await RawClient.connect(c.server.port)
    client.send(post())
    assert await wait_until(lambda: c.backends[0].requests_in_flight == 1)
    closing = asyncio.create_task(c.server.close())
    assert await wait_until(lambda: not c.server._runner.sites)  # the shutdown started
    client.send(post())  # pipelined behind the one in progress
    gate.set()
    answer = await client.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await client.closed()
    await asyncio.wait_for(closing, 20)
    assert c.backends[0].requests_total == 1


async def test_an_unexpected_error_is_a_500_in_the_openai_shape_without_a_traceback(cluster, caplog):
    c = await cluster(mixed=1)

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug with a secret detail")

    c.server.router.generate = broken
    client = await RawClient.connect(c.server.port)
    client.send(post())
    answer = await client.answer()
    assert answer.status == 500 and answer.json()["error"]["type"] == "internal_error"
    assert b"secret detail" not in answer.body and b"Traceback" not in answer.body
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]
    client.send(post())  # the connection survives the error
    assert (await client.answer()).status == 500
    client.close()
