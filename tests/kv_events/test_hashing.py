"""Block keys: chained over the prefix, and the same in every process (unlike Python's hash())."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from fdrouter.kv_events.hashing import TextKeyer, text_block_keys, token_block_keys
from fdrouter.policies.fd_cache_aware import block_hashes
from fdrouter.testing.openai_shapes import prompt_blocks
from fdrouter.validate import prompt_text

BLOCK = "x" * 64  # one 16-token block of text


def test_a_key_names_its_block_and_everything_before_it():
    a = text_block_keys("A" * 64 + BLOCK, 16)
    b = text_block_keys("B" * 64 + BLOCK, 16)
    assert len(a) == len(b) == 2
    assert a[0] != b[0] and a[1] != b[1]  # the same block after another prefix is another key
    assert text_block_keys("A" * 64 + BLOCK + "tail", 16) == a  # a partial last block has no key


def test_keys_are_unsigned_64_bit_integers_and_the_blocks_are_four_characters_a_token():
    keys = text_block_keys("é" * 640, 10)  # code points, not bytes: 640 characters are 16 blocks of 40
    assert len(keys) == 16
    assert all(0 <= k < 2**64 for k in keys)


def test_text_keys_are_fd_cache_aware_block_hashes_read_as_big_endian_integers():
    text = "the prompt of a tenant " * 30
    assert text_block_keys(text, 16) == [int.from_bytes(h, "big") for h in block_hashes(text, 64)]


def test_keys_are_the_same_in_a_process_with_another_hash_seed():
    text = "shared system prompt " * 20
    code = ("from fdrouter.kv_events.hashing import text_block_keys, token_block_keys; "
            f"print(text_block_keys({text!r}, 16), token_block_keys(list(range(40)), 16))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{text_block_keys(text, 16)} {token_block_keys(list(range(40)), 16)}"


def test_token_keys_chain_over_whole_blocks_of_ids_and_tolerate_any_integer():
    keys = token_block_keys(list(range(40)), 16)
    assert len(keys) == 2
    assert token_block_keys([*range(16), *range(100, 116)], 16)[0] == keys[0]
    assert token_block_keys([*range(16), *range(100, 116)], 16)[1] != keys[1]
    assert len(token_block_keys([-1, 2**40] * 8, 16)) == 1  # hostile ids: reduced modulo 2**32, no error


def test_the_mock_backend_keys_a_chat_prompt_exactly_as_the_router_computes_it():
    body = {"messages": [{"role": "system", "content": "s" * 300}, {"role": "user", "content": "question"}]}
    tokens, keys = prompt_blocks(body, True, 16)
    assert list(keys) == text_block_keys(prompt_text(body), 16)
    assert tokens == len(prompt_text(body)) // 4


def test_the_test_vector_in_docs_kv_events_md():
    # block_tokens 1: blocks of 4 characters; what an instance written in any language must reproduce
    assert text_block_keys("abcdefgh", 1) == [0xF021BE6E492F0427, 0x6C4AAAEC52F2879D]
    assert token_block_keys([1, 2, 3, 4], 2) == [3163248134828591078, 1993658516744913731]


@given(st.lists(st.text(alphabet="ab\u00e9\ud800", max_size=40), max_size=12), st.integers(1, 4))
def test_the_memoized_keyer_gives_the_same_keys_even_across_a_full_memo(texts, memo_size):
    keyer = TextKeyer(1, memo_size=memo_size)
    for text in texts:
        assert keyer.keys(text) == text_block_keys(text, 1)
