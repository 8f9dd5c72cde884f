"""The mock backend's /kv_events: hello, snapshot, live batches, resume, pings, and the test knobs."""

from __future__ import annotations

import pytest

from fdrouter.kv_events.hashing import HASH_SCHEME, text_block_keys
from fdrouter.kv_events.wire import AllBlocksCleared, Batch, BlockRemoved, BlockStored, Hello, Ping
from fdrouter.sim.engine_model import EngineModel
from fdrouter.testing import MockBehavior

from ..kv_events.lines import Lines

PROMPT = "a system prompt shared by many requests " * 8  # 320 characters: 5 blocks


async def _chat(session, backend, content: str = PROMPT) -> None:
    payload = {"messages": [{"role": "user", "content": content}]}
    async with session.post(backend.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200
        await resp.read()


async def test_a_new_subscriber_gets_hello_a_snapshot_then_each_change_as_it_happens(mock_backend_factory, session):
    backend = await mock_backend_factory()
    assert backend.prefix_cache.listener is None  # nothing is spent before someone subscribes
    await _chat(session, backend)
    async with session.get(backend.url + "/kv_events") as resp:
        assert resp.status == 200 and resp.content_type == "application/x-ndjson"
        lines = Lines(resp)
        assert await lines.next() == Hello(backend.kv_events.epoch, 16, HASH_SCHEME, 0, False)
        snapshot = await lines.next()
        keys = tuple(text_block_keys(PROMPT, 16))
        assert snapshot == Batch(0, (AllBlocksCleared(), BlockStored(keys)), True, snapshot.ts)
        await _chat(session, backend, PROMPT + "x" * 64)  # one more full block
        batch = await lines.next()
        assert isinstance(batch, Batch) and batch.seq == 1
        assert batch.events == (BlockStored(tuple(text_block_keys(PROMPT + "x" * 64, 16))[-1:]),)
        backend.prefix_cache.clear()
        assert (await lines.next()).events == (AllBlocksCleared(),)  # type: ignore[union-attr]


async def test_evictions_are_published_as_block_removed(mock_backend_factory, session):
    backend = await mock_backend_factory(behavior=MockBehavior(engine=EngineModel(cache_blocks=5)))
    await _chat(session, backend)
    async with session.get(backend.url + "/kv_events") as resp:
        lines = Lines(resp)
        await lines.next()
        await lines.next()
        await _chat(session, backend, "another prompt entirely " * 4)  # 96 characters: 1 block evicts 1
        batch = await lines.next()
        assert isinstance(batch, Batch)
        assert [type(e) for e in batch.events] == [BlockStored, BlockRemoved]
        assert batch.events[1] == BlockRemoved((text_block_keys(PROMPT, 16)[0],))


async def test_a_subscriber_coming_back_with_its_cursor_gets_what_it_missed(mock_backend_factory, session):
    backend = await mock_backend_factory()
    async with session.get(backend.url + "/kv_events") as resp:
        lines = Lines(resp)
        hello = await lines.next()
        await lines.next()
    await _chat(session, backend)
    await _chat(session, backend, "second prompt " * 10)
    query = {"epoch": hello.epoch, "since": "0"}  # type: ignore[union-attr]
    async with session.get(backend.url + "/kv_events", params=query) as resp:
        lines = Lines(resp)
        assert await lines.next() == Hello(backend.kv_events.epoch, 16, HASH_SCHEME, 2, True)
        assert [(await lines.next()).seq for _ in range(2)] == [1, 2]  # type: ignore[union-attr]


@pytest.mark.parametrize("query", [{"epoch": "someone-else", "since": "0"}, {"since": "0"}])
async def test_another_epoch_or_no_epoch_gets_a_snapshot_not_a_replay(mock_backend_factory, session, query):
    backend = await mock_backend_factory()
    async with session.get(backend.url + "/kv_events", params=query) as resp:
        lines = Lines(resp)
        assert (await lines.next()).resume is False  # type: ignore[union-attr]
        assert (await lines.next()).snapshot is True  # type: ignore[union-attr]


async def test_a_cursor_older_than_the_buffer_gets_a_snapshot(mock_backend_factory, session):
    backend = await mock_backend_factory()
    backend.kv_events._buffer = type(backend.kv_events._buffer)(maxlen=1)
    async with session.get(backend.url + "/kv_events") as resp:
        epoch = (await Lines(resp).next()).epoch  # type: ignore[union-attr]
    for i in range(3):
        await _chat(session, backend, f"prompt number {i} " * 8)
    async with session.get(backend.url + "/kv_events", params={"epoch": epoch, "since": "0"}) as resp:
        lines = Lines(resp)
        assert (await lines.next()).resume is False  # type: ignore[union-attr]
        assert (await lines.next()).snapshot is True  # type: ignore[union-attr]


async def test_a_quiet_stream_pings_and_a_skipped_number_shows_in_the_ping(mock_backend_factory, session):
    backend = await mock_backend_factory()
    backend.kv_events.heartbeat = 0.05
    async with session.get(backend.url + "/kv_events") as resp:
        lines = Lines(resp)
        await lines.next()
        await lines.next()
        assert await lines.next() == Ping(0)
        backend.kv_events.skip()
        assert await lines.next() == Ping(1)


async def test_an_injected_line_goes_out_verbatim(mock_backend_factory, session):
    backend = await mock_backend_factory()
    async with session.get(backend.url + "/kv_events") as resp:
        await Lines(resp).next()
        backend.kv_events.inject(b'{"type": "batch", "seq": 1, "events": "garbage"}')
        data = b""
        while b"garbage" not in data:
            data += await resp.content.readany()


async def test_a_new_epoch_empties_the_cache_silently_and_ends_the_streams(mock_backend_factory, session):
    backend = await mock_backend_factory()
    await _chat(session, backend)
    async with session.get(backend.url + "/kv_events") as resp:
        lines = Lines(resp)
        old = (await lines.next()).epoch  # type: ignore[union-attr]
        await lines.next()
        backend.kv_events.new_epoch()
        with pytest.raises(EOFError):
            await lines.next()
    assert len(backend.prefix_cache) == 0 and backend.kv_events.epoch != old


async def test_a_bad_cursor_is_a_400(mock_backend_factory, session):
    backend = await mock_backend_factory()
    async with session.get(backend.url + "/kv_events", params={"since": "soon"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == 400
