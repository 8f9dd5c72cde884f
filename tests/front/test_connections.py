"""Connections on the lean front end: keep-alive, pipelining, HTTP/1.0, Connection: close, and the
hand-over of other requests to aiohttp (and back), all with raw bytes."""

from __future__ import annotations

import asyncio
import json

from fdrouter.testing import wait_until

from .conftest import lean_connections
from .raw_http import STREAM_BODY, RawClient, get, post


async def test_two_requests_on_one_keep_alive_connection_are_both_served_by_the_lean_front(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    first_ids = set()
    for _ in range(2):
        client.send(post())
        answer = await client.answer()
        assert answer.status == 200 and answer.json()["object"] == "chat.completion"
        assert not answer.served_by_aiohttp and "connection" not in answer.headers
        first_ids.add(answer.headers["x-request-id"])
    assert len(first_ids) == 2  # one id per request
    assert c.backends[0].requests_total == 2
    assert len(lean_connections(c.server)) == 1
    client.close()


async def test_pipelined_requests_are_answered_in_order_and_a_control_request_among_them_by_aiohttp(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 3})
    client = await RawClient.connect(c.server.port)
    client.send(post(headers={"X-Request-Id": "a"}) + post(headers={"X-Request-Id": "b"})
                + post(STREAM_BODY, headers={"X-Request-Id": "c"}) + get("/health")
                + post(headers={"X-Request-Id": "d"}))
    answers = [await client.answer() for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5
    assert [a.headers["x-request-id"] for a in answers[:3]] == ["a", "b", "c"]
    assert answers[2].chunked and answers[2].body.endswith(b"data: [DONE]\n\n")
    assert answers[3].json() == {"status": "ok"} and answers[3].served_by_aiohttp
    # the bytes after the control request went to aiohttp with it: it answers "d" itself, in order
    assert answers[4].headers["x-request-id"] == "d" and answers[4].json()["object"] == "chat.completion"
    client.close()


async def test_reading_stops_while_a_pipelined_backlog_waits_and_every_request_is_answered_after(cluster):
    gate = asyncio.Event()
    c = await cluster(mixed=1, behavior={"gate": gate})
    backend = c.backends[0]
    client = await RawClient.connect(c.server.port)
    client.send(post(headers={"X-Request-Id": "first"}))
    assert await wait_until(lambda: backend.requests_in_flight == 1)
    padded = json.dumps({"messages": [{"role": "user", "content": "x" * 4000}]}).encode()
    client.send(b"".join(post(padded, headers={"X-Request-Id": f"r{i}"}) for i in range(40)))  # ~160 KB
    (conn,) = lean_connections(c.server)
    assert await wait_until(lambda: conn.transport is not None and not conn.transport.is_reading())
    assert backend.requests_in_flight == 1  # the backlog waits unparsed behind the first request
    gate.set()
    ids = [(await client.answer()).headers["x-request-id"] for _ in range(41)]
    assert ids == ["first"] + [f"r{i}" for i in range(40)]
    assert backend.requests_total == 41
    client.close()


async def test_an_http10_client_gets_its_answer_and_then_the_connection_closes(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(version="1.0"))
    answer = await client.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await client.closed()


async def test_an_http10_client_that_asks_for_keep_alive_keeps_its_connection(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    for _ in range(2):
        client.send(post(version="1.0", headers={"Connection": "keep-alive"}))
        answer = await client.answer()
        assert answer.status == 200 and answer.headers["connection"] == "keep-alive"
    client.close()


async def test_an_http10_stream_is_sent_unchunked_and_ended_by_closing_the_connection(cluster):
    c = await cluster(mixed=1, behavior={"output_tokens": 4})
    client = await RawClient.connect(c.server.port)
    client.send(post(STREAM_BODY, version="1.0", headers={"Connection": "keep-alive"}))
    answer = await client.answer()  # no Content-Length, not chunked: read until EOF
    assert answer.status == 200 and not answer.chunked and "transfer-encoding" not in answer.headers
    assert answer.headers["connection"] == "close"
    assert answer.body.count(b"data: ") == 4 + 2 and answer.body.endswith(b"data: [DONE]\n\n")


async def test_connection_close_is_honoured_and_a_request_pipelined_after_it_is_not_served(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(headers={"Connection": "close"}) + post())
    answer = await client.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await client.closed()
    assert c.backends[0].requests_total == 1


async def test_control_and_generation_requests_alternate_on_one_connection(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    for _ in range(2):
        client.send(get("/health"))
        health = await client.answer()
        assert health.status == 200 and health.served_by_aiohttp
        client.send(post())
        chat = await client.answer()
        assert chat.status == 200 and not chat.served_by_aiohttp
    client.send(get("/registered_number"))
    assert (await client.answer()).json()["mixed"] == 1
    client.close()


async def test_heads_trickled_a_byte_at_a_time_are_parsed_whole_by_either_front(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    for request, by_aiohttp in ((b"\r\n" + post(), False), (get("/health"), True)):
        for i in range(len(request)):  # the CRLFCRLF that ends a head straddles two reads, and so on
            client.send(request[i:i + 1])
            await client.writer.drain()
            await asyncio.sleep(0)
        answer = await client.answer()
        assert answer.status == 200 and answer.served_by_aiohttp is by_aiohttp
    # aiohttp gives the connection back when a generation request line comes in one read
    client.send(post())
    answer = await client.answer()
    assert answer.status == 200 and not answer.served_by_aiohttp
    client.close()


async def test_a_generation_path_with_a_query_string_or_another_method_is_left_to_aiohttp(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(path="/v1/chat/completions?trace=1"))
    answer = await client.answer()
    assert answer.status == 200 and answer.served_by_aiohttp
    client.send(get("/v1/chat/completions"))
    answer = await client.answer()
    assert answer.status == 405 and answer.json()["error"]["code"] == "method_not_allowed"
    client.close()


async def test_a_request_body_sent_after_its_head_in_many_pieces_is_read_whole(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    body = json.dumps({"messages": [{"role": "user", "content": "y" * 300_000}]}).encode()
    request = post(body)
    for i in range(0, len(request), 4096):
        client.send(request[i:i + 4096])
        await client.writer.drain()
    answer = await client.answer()
    assert answer.status == 200
    assert c.backends[0].received[-1]["messages"][0]["content"] == "y" * 300_000
    client.close()
