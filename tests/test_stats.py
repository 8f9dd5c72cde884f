"""The periodic stats line (--stats-interval-secs): running requests per instance and the cache hit rate."""

from __future__ import annotations

import json
import logging

from fdrouter.stats import CacheStats, UsageTap, stats_line, usage_of

from .conftest import wait_until

PROMPT = "".join(f"shared prefix {i:04d} " for i in range(120))  # ~2,400 characters: many cache blocks


def test_usage_is_read_from_the_end_of_a_body_without_decoding_the_rest():
    body = json.dumps({"choices": [{"message": {"content": 'says "usage": {"prompt_tokens": 1}'}}],
                       "usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}}}).encode()
    assert usage_of(body) == {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}}
    assert usage_of(b'{"choices": [], "usage": null}') is None
    assert usage_of(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n') is None
    assert usage_of(b'data: {"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
                    b"data: [DONE]\n\n") == {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}


def test_cache_stats_count_reported_tokens_and_start_anew_after_each_take():
    stats = CacheStats()
    stats.observe({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}})
    stats.observe({"prompt_tokens": 6})  # no details: nothing cached
    stats.observe({"completion_tokens": 6})  # no prompt count: not an answer to count
    stats.observe(None)
    assert stats.take() == (16, 4, 2)
    assert stats.take() == (0, 0, 0)


def test_the_line_reads_like_the_go_routers():
    line = stats_line([("http://a:1", 0), ("http://b:2", 3)], 200, 50, 4)
    assert line == ("[stats] total_running=3, workers: [http://a:1: running=0, http://b:2: running=3], "
                    "cache_hit_rate=25.00% (cached_tokens=50/prompt_tokens=200 in 4 answers)")
    assert "cache_hit_rate=0.00%" in stats_line([], 0, 0, 0)


async def test_no_stats_interval_means_no_usage_tap(router_factory):
    server = await router_factory()
    assert server.router.stats is None and server.router.stats_log is None


async def test_the_router_logs_running_requests_and_the_hit_rate_the_answers_reported(cluster, caplog):
    caplog.set_level(logging.INFO, logger="fdrouter.stats")
    c = await cluster(mixed=1, stats_interval_secs=0.05)
    for _ in range(2):  # the second answer finds the prompt in the mock's prefix cache
        status, answer = await c.chat(PROMPT)
        assert status == 200
    cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0
    payload = {"messages": [{"role": "user", "content": PROMPT}], "stream": True,
               "stream_options": {"include_usage": True}}
    async with c.http.post(c.url + "/v1/chat/completions", json=payload) as resp:
        await resp.read()

    def counted() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "fdrouter.stats" and "in 0 answers" not in
                r.getMessage()]

    assert await wait_until(lambda: sum(int(m.rsplit(" in ", 1)[1].split()[0]) for m in counted()) == 3)
    assert all(f"workers: [{c.backends[0].url}: running=" in m for m in counted())
    cached_total = sum(int(m.split("cached_tokens=")[1].split("/")[0]) for m in counted())
    assert cached_total == 2 * cached  # the second chat and the stream found it cached


class _Answer:
    """The part of an upstream Response that UsageTap reads."""

    status = 200
    content_type = "application/json"

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def iter_chunks(self):
        for chunk in self.chunks:
            yield chunk


async def test_a_usage_cut_between_two_chunks_is_still_counted():
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "prompt_tokens_details": {"cached_tokens": 5}}})
    cut = body.index("prompt_tokens_details")
    stats = CacheStats()
    tap = UsageTap(_Answer(body[:cut].encode(), body[cut:].encode()), stats)  # type: ignore[arg-type]
    assert b"".join([chunk async for chunk in tap.iter_chunks()]) == body.encode()
    assert stats.take() == (12, 5, 1)
