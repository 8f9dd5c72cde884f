"""Request bodies on the lean front end: chunked transfer coding, Expect: 100-continue, the size
limit (declared or not), each with raw bytes."""

from __future__ import annotations

import json

from .raw_http import BODY, RawClient, chunked, post


async def test_a_chunked_body_with_extensions_and_trailers_reaches_the_instance_whole(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(chunked(BODY, trailers="X-Checksum: 1\r\n"), length=False,
                     headers={"Transfer-Encoding": "chunked"}))
    answer = await client.answer()
    assert answer.status == 200
    assert c.backends[0].received[-1] == json.loads(BODY)
    client.close()


async def test_a_request_pipelined_right_after_a_chunked_one_is_read_from_where_that_one_ended(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    # a chunk whose data looks like a request head: only the chunk sizes say where the body ends
    tricky = json.dumps({"messages": [{"role": "user", "content": "0\r\n\r\nPOST / HTTP/1.1\r\n\r\n"}]}).encode()
    client.send(post(chunked(tricky, sizes=(5, 3)), length=False, headers={"Transfer-Encoding": "chunked",
                                                                          "X-Request-Id": "one"})
                + post(headers={"X-Request-Id": "two"}))
    first, second = await client.answer(), await client.answer()
    assert (first.status, first.headers["x-request-id"]) == (200, "one")
    assert (second.status, second.headers["x-request-id"]) == (200, "two")
    assert [r["messages"][0]["content"] for r in c.backends[0].received] == [
        "0\r\n\r\nPOST / HTTP/1.1\r\n\r\n", "hi"]
    client.close()


async def test_expect_100_continue_gets_the_interim_answer_before_the_body_is_sent(cluster):
    c = await cluster(mixed=1, api_key="sesame")
    client = await RawClient.connect(c.server.port)
    request = post(headers={"Expect": "100-continue", "Authorization": "Bearer sesame"})
    head, _, body = request.partition(b"\r\n\r\n")
    client.send(head + b"\r\n\r\n")
    status, _, raw = await client.head()
    assert status == 100 and raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(body)
    answer = await client.answer()
    assert answer.status == 200 and answer.json()["object"] == "chat.completion"
    client.close()


async def test_expect_100_continue_without_the_key_gets_401_and_no_interim_answer(cluster):
    c = await cluster(mixed=1, api_key="sesame")
    client = await RawClient.connect(c.server.port)
    client.send(post(headers={"Expect": "100-continue"}).partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    status, headers, _ = await client.head()  # the first answer is the final one
    assert status == 401 and headers["connection"] == "close"
    assert await client.closed()  # the body never came: the connection cannot carry another request


async def test_expect_100_continue_with_a_declared_size_over_the_limit_gets_413_and_no_interim_answer(cluster):
    c = await cluster(mixed=1, max_body_bytes=2048)
    client = await RawClient.connect(c.server.port)
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    status, headers, _ = await client.head()
    assert status == 413 and headers["connection"] == "close"
    assert await client.closed()


async def test_a_declared_content_length_over_the_limit_is_refused_before_the_body_is_sent(cluster):
    c = await cluster(mixed=1, max_body_bytes=2048)
    client = await RawClient.connect(c.server.port)
    client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 100000000\r\n\r\n")
    answer = await client.answer()
    assert answer.status == 413 and answer.json()["error"]["code"] == "payload_too_large"
    assert answer.headers["x-request-id"]
    assert await client.closed()
    assert c.backends[0].requests_total == 0


async def test_a_chunked_body_that_grows_over_the_limit_gets_413_and_the_connection_closes(cluster):
    c = await cluster(mixed=1, max_body_bytes=2048)
    client = await RawClient.connect(c.server.port)
    big = json.dumps({"messages": [{"role": "user", "content": "z" * 5000}]}).encode()
    client.send(post(chunked(big, sizes=(1000,)), length=False, headers={"Transfer-Encoding": "chunked"}))
    answer = await client.answer()
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert await client.closed()
    assert c.backends[0].requests_total == 0


async def test_a_malformed_chunked_body_gets_an_openai_shaped_400_and_the_connection_closes(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(b"zz\r\nnot hex\r\n0\r\n\r\n", length=False, headers={"Transfer-Encoding": "chunked"}))
    answer = await client.answer()
    assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert await client.closed()


async def test_a_body_that_is_not_json_gets_a_400_naming_the_problem_and_the_connection_stays_open(cluster):
    c = await cluster(mixed=1)
    client = await RawClient.connect(c.server.port)
    client.send(post(b"{not json"))
    answer = await client.answer()
    assert answer.status == 400 and "not valid JSON" in answer.json()["error"]["message"]
    client.send(post())
    assert (await client.answer()).status == 200
    client.close()
