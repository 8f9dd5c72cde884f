"""Checking a client's generation request just enough to route it and to reject bad input.

The body is forwarded unchanged in mixed mode, so this only parses and checks the fields
the router itself relies on or that an instance would reject with a confusing error.
"""

from __future__ import annotations

from typing import Any

from . import jsonutil
from .errors import BadRequest

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a body. A chat request with multimodal
parts and tool schemas nests a dozen levels; anything near the JSON libraries' own limits
(orjson 1024, the json module's recursion limit ~1000) is an attack, refused the same way
whichever library parses it."""


def parse_json_object(raw: bytes, what: str = "request body") -> dict[str, Any]:
    """Parse bytes as one JSON object; malformed input is a BadRequest saying why."""
    if not raw:
        raise BadRequest(f"{what} is empty; expected a JSON object")
    try:
        body = jsonutil.loads(raw)
    except (jsonutil.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # the json module on a very deep document
        raise BadRequest(f"{what} nests arrays or objects deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(body).__name__}")
    # depth <= the number of opening brackets, counted in C: only a body with many of them is walked
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequest(f"{what} nests arrays or objects deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth_exceeds(root: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _check_int(body: dict, name: str, *, minimum: int) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise BadRequest(f"field '{name}' must be an integer >= {minimum}, got {value!r}")


def check_generation(body: dict[str, Any], endpoint: str) -> None:
    """Reject a chat/completions body the router cannot route or an instance would choke on."""
    if endpoint == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("field 'messages' is required and must be a non-empty list")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(f"field 'messages[{i}]' must be an object with a string 'role'")
    else:
        prompt = body.get("prompt")
        if prompt is None:
            raise BadRequest("field 'prompt' is required")
        if not isinstance(prompt, (str, list)):
            raise BadRequest("field 'prompt' must be a string, a list of strings or a list of token ids")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"field 'stream' must be true or false, got {stream!r}")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"field 'model' must be a string, got {model!r}")
    _check_int(body, "max_tokens", minimum=1)
    _check_int(body, "max_completion_tokens", minimum=1)
    _check_int(body, "n", minimum=1)
    request_id = body.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"field 'request_id' must be a string, got {request_id!r}")


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt as one string, for policies that match prefixes (and the mock's KV cache).

    Chat: message contents joined with "\n" (text parts of multimodal contents only);
    completions: the prompt, a list joined with " ". Never raises, whatever the body holds.
    """
    if "messages" in body:
        messages = body.get("messages")
        parts: list[str] = []
        for message in messages if isinstance(messages, list) else ():
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # multimodal parts: keep the text ones
                parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return " ".join(str(p) for p in prompt)
    return ""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 characters per token for English (OpenAI's rule of thumb)."""
    return max(1, len(text) // 4)


__all__ = ["CHAT", "COMPLETIONS", "MAX_JSON_DEPTH", "check_generation", "estimate_tokens", "parse_json_object", "prompt_text"]
