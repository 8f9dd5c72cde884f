"""StreamState: how one instance's stream moves the index, and every way it decides to resync."""

from __future__ import annotations

import pytest

from fdrouter.kv_events.hashing import HASH_SCHEME
from fdrouter.kv_events.index import KvIndex
from fdrouter.kv_events.stream import Incompatible, Resync, StreamState
from fdrouter.kv_events.wire import CLEARED, encode_batch, encode_hello, encode_ping, removed, stored

URL = "http://a:1"


def _state() -> tuple[StreamState, KvIndex]:
    index = KvIndex()
    return StreamState(URL, index, block_tokens=16, scheme=HASH_SCHEME), index


def _hello(epoch: str = "e1", seq: int = 0, resume: bool = False, block_tokens: int = 16,
           scheme: str = HASH_SCHEME) -> bytes:
    return encode_hello(epoch, block_tokens, scheme, seq, resume)


def _snapshot(seq: int, keys: list[int]) -> bytes:
    return encode_batch(seq, 0.0, [CLEARED, stored(keys, 16)], snapshot=True)


def _synced(keys: list[int], epoch: str = "e1", seq: int = 5) -> tuple[StreamState, KvIndex]:
    state, index = _state()
    state.query()
    state.feed(_hello(epoch, seq))
    state.feed(_snapshot(seq, keys))
    return state, index


def test_a_new_stream_asks_for_nothing_and_starts_from_the_snapshot():
    state, index = _state()
    assert state.query() == {}
    state.feed(_hello(seq=5))
    state.feed(_snapshot(5, [1, 2, 3]))
    assert index.blocks_of(URL) == {1, 2, 3}
    assert (state.epoch, state.seq) == ("e1", 5)
    assert state.query() == {"epoch": "e1", "since": "5"}


def test_batches_in_sequence_are_applied_in_order():
    state, index = _synced([1, 2])
    state.feed(encode_batch(6, 0.0, [stored([3, 4], 16), removed([1])]))
    state.feed(encode_ping(6))
    state.feed(encode_batch(7, 0.0, [CLEARED, stored([9], 16)]))
    assert index.blocks_of(URL) == {9} and state.seq == 7


def test_a_gap_in_the_sequence_is_a_resync_and_reset_forgets_blocks_and_cursor():
    state, index = _synced([1, 2])
    with pytest.raises(Resync, match="gap"):
        state.feed(encode_batch(8, 0.0, [stored([3], 16)]))
    assert index.blocks_of(URL) == {1, 2}  # nothing of the bad batch applied
    state.reset()
    assert index.blocks_of(URL) == set() and state.query() == {}


def test_a_ping_ahead_of_the_last_batch_reveals_missed_batches():
    state, _ = _synced([1])
    with pytest.raises(Resync, match="gap"):
        state.feed(encode_ping(6))


def test_a_malformed_line_is_a_resync_never_another_exception():
    state, index = _synced([1])
    for line in (b"{oops", b'{"type": "batch", "seq": 6, "events": [{"type": "BlockStored"}]}'):
        with pytest.raises(Resync, match="malformed"):
            state.feed(line)
    assert index.blocks_of(URL) == {1}


def test_a_resumed_stream_continues_from_the_cursor():
    state, index = _synced([1], seq=5)
    assert state.query() == {"epoch": "e1", "since": "5"}
    state.feed(_hello("e1", seq=7, resume=True))
    state.feed(encode_batch(6, 0.0, [stored([2], 16)]))
    state.feed(encode_batch(7, 0.0, [stored([3], 16)]))
    assert index.blocks_of(URL) == {1, 2, 3} and state.seq == 7


def test_a_new_epoch_drops_the_blocks_of_the_old_one_at_once():
    state, index = _synced([1, 2], epoch="e1")
    state.query()
    state.feed(_hello("e2", seq=0, resume=False))
    assert index.blocks_of(URL) == set()  # before the new snapshot even arrives
    state.feed(_snapshot(0, []))
    state.feed(encode_batch(1, 0.0, [stored([7], 16)]))
    assert index.blocks_of(URL) == {7}


def test_a_snapshot_in_the_middle_of_a_stream_replaces_what_was_indexed():
    state, index = _synced([1, 2])
    state.feed(_snapshot(40, [5]))
    state.feed(encode_batch(41, 0.0, [stored([6], 16)]))
    assert index.blocks_of(URL) == {5, 6}


@pytest.mark.parametrize(("lines", "reason"), [
    ([encode_ping(0)], "hello"),
    ([_hello(), _hello()], "second hello"),
    ([_hello(), encode_batch(1, 0.0, [])], "snapshot was due"),
    ([_hello(resume=True)], "resumes"),
])
def test_protocol_slips_are_resyncs(lines, reason):
    state, _ = _state()
    state.query()
    with pytest.raises(Resync, match=reason):
        for line in lines:
            state.feed(line)


def test_an_instance_resuming_behind_the_routers_cursor_is_a_resync():
    state, _ = _synced([1], seq=5)
    state.query()
    with pytest.raises(Resync):
        state.feed(_hello("e1", seq=3, resume=True))


@pytest.mark.parametrize("hello", [_hello(block_tokens=64), _hello(scheme="vllm-sha256")])
def test_an_instance_keying_blocks_otherwise_is_incompatible(hello):
    state, index = _state()
    state.query()
    with pytest.raises(Incompatible):
        state.feed(hello)
    assert index.instances() == []
