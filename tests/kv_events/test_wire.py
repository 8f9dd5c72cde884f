"""The /kv_events line format: what parses, what is ignored, and that nothing else ever escapes but WireError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fdrouter.kv_events.wire import (
    CLEARED,
    AllBlocksCleared,
    Batch,
    BlockRemoved,
    BlockStored,
    Hello,
    LineBuffer,
    Ping,
    WireError,
    encode_batch,
    encode_hello,
    encode_ping,
    parse_line,
    removed,
    stored,
)


def test_the_encoders_and_the_parser_agree_on_every_line_type():
    assert parse_line(encode_hello("e1", 16, "scheme", 41, True)) == Hello("e1", 16, "scheme", 41, True)
    assert parse_line(encode_ping(7)) == Ping(7)
    line = encode_batch(42, 1.5, [stored([1, 2], 16), removed([3]), CLEARED])
    assert parse_line(line) == Batch(42, (BlockStored((1, 2)), BlockRemoved((3,)), AllBlocksCleared()), False, 1.5)
    snapshot = parse_line(encode_batch(42, 0.0, [CLEARED, stored([9], 16)], snapshot=True))
    assert isinstance(snapshot, Batch) and snapshot.snapshot


def test_a_vllm_shaped_batch_with_signed_hashes_and_extra_fields_parses():
    line = json.dumps({"type": "batch", "seq": 3, "ts": 10, "data_parallel_rank": 0, "events": [
        {"type": "BlockStored", "block_hashes": [-1, 5], "parent_block_hash": None, "token_ids": [1, 2],
         "block_size": 16, "lora_id": None, "medium": "GPU", "lora_name": None}]})
    batch = parse_line(line)
    assert batch == Batch(3, (BlockStored((2**64 - 1, 5)),), False, 10.0)  # signed -1: the same 64 bits


def test_blank_lines_lines_of_unknown_type_and_events_of_other_tiers_are_ignored():
    assert parse_line(b"") is None and parse_line(b"  \r") is None
    assert parse_line(b'{"type": "stats", "whatever": 1}') is None
    line = encode_batch(1, 0.0, [{"type": "BlockStored", "block_hashes": [1], "medium": "CPU"}])
    assert parse_line(line) == Batch(1, (), False, 0.0)


@pytest.mark.parametrize("line", [
    b"not json",
    b"[1, 2]",
    b'{"seq": 1}',
    b'{"type": 5}',
    b'{"type": "batch", "seq": 1}',
    b'{"type": "batch", "seq": -1, "events": []}',
    b'{"type": "batch", "seq": true, "events": []}',
    b'{"type": "batch", "seq": 1, "events": [1]}',
    b'{"type": "batch", "seq": 1, "events": [{"type": "BlockStored"}]}',
    b'{"type": "batch", "seq": 1, "events": [{"type": "BlockStored", "block_hashes": [1.5]}]}',
    b'{"type": "batch", "seq": 1, "events": [{"type": "BlockStored", "block_hashes": [18446744073709551616]}]}',
    b'{"type": "batch", "seq": 1, "events": [{"type": "BlockMoved", "block_hashes": [1]}]}',
    b'{"type": "batch", "seq": 1, "snapshot": true, "events": [{"type": "BlockStored", "block_hashes": [1]}]}',
    b'{"type": "batch", "seq": 1, "ts": "now", "events": []}',
    b'{"type": "hello", "epoch": "", "block_tokens": 16, "hash": "h", "seq": 0, "resume": false}',
    b'{"type": "hello", "epoch": "e", "block_tokens": 0, "hash": "h", "seq": 0, "resume": false}',
    b'{"type": "hello", "epoch": "e", "block_tokens": 16, "hash": "h", "seq": 0, "resume": "no"}',
    b'{"type": "ping"}',
])
def test_a_malformed_line_is_a_wire_error(line):
    with pytest.raises(WireError):
        parse_line(line)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_wire_error_and_nothing_else(raw):
    try:
        parse_line(raw)
    except WireError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["type", "seq", "events", "block_hashes", "epoch", "hash", "resume",
                                         "block_tokens", "snapshot", "ts", "medium"]), inner, max_size=6),
                    max_leaves=20),
       st.sampled_from(["batch", "hello", "ping", "BlockStored"]))
def test_arbitrary_json_documents_parse_or_raise_wire_error_and_nothing_else(doc, kind):
    if isinstance(doc, dict):
        doc = {**doc, "type": kind}
    try:
        parse_line(json.dumps(doc))
    except WireError:
        pass


def test_the_line_buffer_reassembles_lines_split_anywhere():
    data = encode_hello("e", 16, "h", 0, False) + encode_ping(1) + encode_ping(2)
    for cut in range(1, len(data)):
        buffer = LineBuffer()
        lines = buffer.feed(data[:cut]) + buffer.feed(data[cut:])
        assert [parse_line(line) for line in lines] == [Hello("e", 16, "h", 0, False), Ping(1), Ping(2)]


def test_the_line_buffer_refuses_a_line_longer_than_its_bound_even_before_it_ends():
    buffer = LineBuffer(max_bytes=10)
    buffer.feed(b"12345")
    with pytest.raises(WireError):
        buffer.feed(b"678901")  # 11 bytes and no newline yet
    with pytest.raises(WireError):
        LineBuffer(max_bytes=10).feed(b"x" * 11 + b"\n")
