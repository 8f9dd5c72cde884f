"""Slow clients on the lean front end: the header, body and keep-alive timeouts, and a client that
stops reading its answer. (tests/test_client_guard.py and tests/e2e/test_upstream_answers.py run
theirs, the write watchdog's among them, on both front ends.)"""

from __future__ import annotations

import asyncio

from .raw_http import RawClient, post


async def test_a_request_line_cut_before_it_names_its_endpoint_gets_408_after_the_header_timeout(cluster):
    c = await cluster(mixed=1, client_header_timeout_secs=0.3)
    client = await RawClient.connect(c.server.port)
    client.send(b"POST /v1/c")  # the lean front or aiohttp? not known yet, and it never will be
    answer = await client.answer()
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert "--client-header-timeout-secs" in answer.json()["error"]["message"]
    assert await client.closed()


async def test_a_generation_head_that_stops_half_way_gets_408_after_the_header_timeout(cluster):
    c = await cluster(mixed=1, client_header_timeout_secs=0.3)
    client = await RawClient.connect(c.server.port)
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Le")
    answer = await client.answer()
    assert answer.status == 408 and answer.json()["error"]["code"] == "request_timeout"
    assert await client.closed()


async def test_the_header_timeout_counts_from_the_first_byte_of_the_head_not_from_the_last(cluster):
    c = await cluster(mixed=1, client_header_timeout_secs=0.5)
    client = await RawClient.connect(c.server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer_task = asyncio.ensure_future(client.answer())
    for byte in post():  # every 50 ms a byte: the head alone would take ~4 s
        if answer_task.done():
            break
        client.send(bytes([byte]))
        await asyncio.sleep(0.05)
    answer = await answer_task
    assert answer.status == 408
    assert loop.time() - started < 3  # well before the head could have been complete


async def test_a_body_that_stalls_gets_408_after_the_body_timeout_and_the_connection_closes(cluster):
    c = await cluster(mixed=1, client_body_timeout_secs=0.3)
    client = await RawClient.connect(c.server.port)
    client.send(post() + b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 500\r\n\r\n{")
    assert (await client.answer()).status == 200  # the first request was whole: answered
    answer = await client.answer()  # the second one's body stops after one byte
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert "--client-body-timeout-secs" in answer.json()["error"]["message"]
    assert await client.closed()


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(cluster):
    c = await cluster(mixed=1, client_keepalive_timeout_secs=0.3)
    client = await RawClient.connect(c.server.port)
    client.send(post())
    assert (await client.answer()).status == 200
    assert await client.closed()  # nothing more was sent: the idle connection is closed


async def test_a_connection_that_never_sends_a_byte_is_closed_after_the_keepalive_timeout(cluster):
    c = await cluster(mixed=1, client_keepalive_timeout_secs=0.3)
    client = await RawClient.connect(c.server.port)
    assert await client.closed()
