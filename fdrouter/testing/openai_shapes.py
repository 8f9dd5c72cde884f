"""The OpenAI wire shapes a mock backend reads and writes, without any I/O.

Reading: a request's prompt (chat messages or a completions prompt, text or token ids), its
token count and prefix-cache block hashes, and how many tokens to generate. Writing: the
non-streaming ``chat.completion`` / ``text_completion`` body, the SSE chunks of a stream,
``usage`` with ``prompt_tokens_details.cached_tokens``, and OpenAI-shaped errors.

Generated text is ``"tok0 tok1 ..."``: the tests recognise it, and it needs no JSON escaping,
so stream chunks are built from string templates, not dicts (the mock is also the backend of
the throughput benchmarks). The id of token ``tok<i>`` is ``i``; with FastDeploy's
``return_token_ids`` the answers carry them as FastDeploy does (``completion_token_ids`` and
``prompt_token_ids`` in the chat ``message``/``delta``, in the completions choice).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from fdrouter.kv_events.hashing import TextKeyer, token_block_keys
from fdrouter.sim.kvcache import CHARS_PER_TOKEN
from fdrouter.validate import prompt_text as _router_prompt_text

__all__ = [
    "DONE",
    "SSE_HEADERS",
    "chunk_head",
    "completion_body",
    "completion_tokens",
    "content",
    "continued_from",
    "error_body",
    "last_chunk",
    "prompt_blocks",
    "prompt_text",
    "token",
    "token_chunk",
    "token_ids",
    "usage",
    "wants_token_ids",
]

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"
"""The last event of an OpenAI stream."""

# One memoized keyer per block size: the prompts a mock sees share long prefixes.
_KEYERS: dict[int, TextKeyer] = {}

# Non-streaming content for a given token count; bounded so odd max_tokens values can't grow it forever.
_CONTENT_CACHE: dict[int, str] = {}
_CONTENT_CACHE_MAX = 256


# -- reading a request -------------------------------------------------------------------------------


def prompt_text(body: dict[str, Any], chat: bool) -> str:
    """The prompt as one string: the router's own ``prompt_text``, so its cache-aware policy and
    the mock's cache see the same prefixes."""
    if chat and "messages" not in body:
        return ""
    return _router_prompt_text(body)


def token_ids(prompt: Any) -> list[int] | None:
    """A completions prompt given as token ids (one list, or a batch of lists taken as one), else None."""
    if not isinstance(prompt, list) or not prompt:
        return None
    if all(type(x) is int for x in prompt):
        return prompt
    if all(isinstance(x, list) and all(type(t) is int for t in x) for x in prompt):
        return [t for x in prompt for t in x]
    return None


def prompt_blocks(body: dict[str, Any], chat: bool, block_tokens: int | None) -> tuple[int, Sequence[int]]:
    """(estimated prompt tokens, chained block hashes); no hashing when `block_tokens` is None.

    The estimate is the router's: len(text) // 4 (OpenAI's rule of thumb); token ids count exactly.
    The hashes are the KV-event block keys (`fdrouter.kv_events.hashing`, the same in every
    process), so what the mock publishes is what the router computes from the prompt.
    """
    ids = None if chat else token_ids(body.get("prompt"))
    if ids is not None:
        return max(1, len(ids)), (() if block_tokens is None else token_block_keys(ids, block_tokens))
    text = prompt_text(body, chat)
    tokens = max(1, len(text) // CHARS_PER_TOKEN)
    if block_tokens is None:
        return tokens, ()
    keyer = _KEYERS.get(block_tokens)
    if keyer is None:
        keyer = _KEYERS[block_tokens] = TextKeyer(block_tokens)
    return tokens, keyer.keys(text)


def completion_tokens(body: dict[str, Any], output_tokens: int) -> int:
    """Tokens to generate: `output_tokens`, or the request's ``max_tokens`` (or
    ``max_completion_tokens``) if that is a smaller non-negative integer."""
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 <= max_tokens < output_tokens:
        return max_tokens
    return output_tokens


def wants_token_ids(body: dict[str, Any]) -> bool:
    """FastDeploy's ``return_token_ids``: the answer carries the prompt's and the output's token ids."""
    return body.get("return_token_ids") is True


def continued_from(body: dict[str, Any]) -> int:
    """Tokens generated before (FastDeploy's ``completion_token_ids`` of a rescheduled request):
    generation goes on from there. The ids must be the mock's own (``0, 1, ...``); others count too."""
    done = body.get("completion_token_ids")
    if isinstance(done, list) and all(type(t) is int for t in done):
        return len(done)
    return 0


# -- writing an answer ------------------------------------------------------------------------------


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-shaped error: {"error": {"message", "type", "code"}}."""
    error_type = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": error_type, "code": status}}).encode()


def token(i: int) -> str:
    """The text of generated token `i`."""
    return f"tok{i} "


def content(n: int) -> str:
    """The whole text of `n` generated tokens."""
    text = _CONTENT_CACHE.get(n)
    if text is None:
        text = "".join(token(i) for i in range(n))
        if len(_CONTENT_CACHE) < _CONTENT_CACHE_MAX:
            _CONTENT_CACHE[n] = text
    return text


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """OpenAI's ``usage``, with the prompt tokens found in the prefix cache."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def completion_body(
    chat: bool, response_id: str, model: str, n: int, prompt_tokens: int, cached_tokens: int, *,
    start: int = 0, finish_reason: str = "length", prompt_ids: Sequence[int] | None = None,
) -> bytes:
    """A non-streaming answer of tokens ``start .. n-1``, cut by length (the mock never stops on
    its own) unless `finish_reason` says otherwise (``pd_reschedule``: preempted). `prompt_ids`
    given: FastDeploy's ``return_token_ids`` fields, the prompt's ids and the output's."""
    text = content(n) if start == 0 else "".join(token(i) for i in range(start, n))
    choice: dict[str, Any]
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish_reason}
        ids_at = message
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        ids_at = choice
    if prompt_ids is not None:
        ids_at["prompt_token_ids"] = list(prompt_ids)
        ids_at["completion_token_ids"] = list(range(start, n))
    answer = {
        "id": response_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, n - start, cached_tokens),
    }
    return json.dumps(answer).encode()


def chunk_head(chat: bool, response_id: str, model_json: str) -> str:
    """The fixed start of every chunk of one stream (`model_json`: the model name, JSON-encoded)."""
    object_name = "chat.completion.chunk" if chat else "text_completion"
    return (
        f'data: {{"id":{json.dumps(response_id)},"object":"{object_name}","created":{int(time.time())},'
        f'"model":{model_json},"choices":[{{"index":0,'
    )


def token_chunk(
    head: str, chat: bool, i: int, *, role: bool | None = None, prompt_ids: Sequence[int] | None = None
) -> bytes:
    """The SSE event carrying token `i` (chat: the first one, ``role`` or else ``i == 0``, also
    says the role). `prompt_ids` given: FastDeploy's ``return_token_ids`` fields, the output
    token's id and, on the first event (``role``), the prompt's ids."""
    first = i == 0 if role is None else role
    if prompt_ids is None:
        ids = ""
    else:
        ids = f',"completion_token_ids":[{i}]'
        if first:
            ids = ',"prompt_token_ids":' + json.dumps(list(prompt_ids), separators=(",", ":")) + ids
    if chat:
        role_text = '"role":"assistant",' if first else ""
        return f'{head}"delta":{{{role_text}"content":"{token(i)}"{ids}}},"finish_reason":null}}]}}\n\n'.encode()
    return f'{head}"text":"{token(i)}","logprobs":null{ids},"finish_reason":null}}]}}\n\n'.encode()


def last_chunk(head: str, chat: bool, usage: dict[str, Any] | None, finish_reason: str = "length") -> bytes:
    """The finishing SSE event: no text, `finish_reason` ("length", or "pd_reschedule" when the
    instance preempted the request), `usage` if given."""
    if chat:
        choice = f'"delta":{{}},"finish_reason":"{finish_reason}"}}]'
    else:
        choice = f'"text":"","logprobs":null,"finish_reason":"{finish_reason}"}}]'
    tail = "" if usage is None else ',"usage":' + json.dumps(usage, separators=(",", ":"))
    return f"{head}{choice}{tail}}}\n\n".encode()
