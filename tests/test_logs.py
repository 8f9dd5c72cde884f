"""Logging set-up: JSON and text lines, request ids on every line, id validation, secret redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from fdrouter.logs import (
    accept_request_id,
    configure_logging,
    new_request_id,
    redact,
    request_id,
    reset_request_id,
    set_request_id,
)

log = logging.getLogger("fdrouter.test_logs")


@pytest.fixture
def root_restored() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def json_lines(root_restored) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, secrets=["sk-secret-key-123", None])
    yield stream


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_fields_extras_and_request_id(json_lines):
    token = set_request_id("req-42")
    try:
        log.info("routed to %s", "A", extra={"instance": "http://10.0.0.1:8000", "attempt": 2})
    finally:
        reset_request_id(token)
    log.warning("no request here")
    log.info("about a request, from elsewhere", extra={"request_id": "req-7"})
    first, second, third = _records(json_lines)
    assert third["request_id"] == "req-7"
    assert first["message"] == "routed to A"
    assert (first["level"], first["logger"], first["request_id"]) == ("info", "fdrouter.test_logs", "req-42")
    assert (first["instance"], first["attempt"]) == ("http://10.0.0.1:8000", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "request_id" not in second and second["level"] == "warning"


def test_json_keeps_a_multi_line_event_with_its_traceback_on_one_line(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed\nbadly")
    lines = json_lines.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "failed\nbadly" and "ValueError: boom" in record["exc"]


async def test_concurrent_requests_each_stamp_their_own_id(json_lines):
    async def handle(rid: str) -> None:
        set_request_id(rid)  # each task runs in a copy of the context, as aiohttp's handlers do
        await asyncio.sleep(0)
        log.info("start")
        await asyncio.sleep(0)
        await asyncio.create_task(asyncio.sleep(0))
        log.info("end")

    await asyncio.gather(handle("one"), handle("two"))
    assert request_id.get() is None
    by_id: dict[str, list[str]] = {}
    for record in _records(json_lines):
        by_id.setdefault(record["request_id"], []).append(record["message"])
    assert by_id == {"one": ["start", "end"], "two": ["start", "end"]}


def test_text_lines_append_extras_and_the_request_id(root_restored):
    stream = io.StringIO()
    configure_logging("debug", "text", stream=stream)
    token = set_request_id("abc123")
    try:
        log.debug("picked instance", extra={"instance": "http://h:1", "reason": "least load"})
    finally:
        reset_request_id(token)
    log.info("two\nlines from a client")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\S+ DEBUG fdrouter\.test_logs: picked instance instance=http://h:1 reason=\"least load\" request_id=abc123",
        first,
    )
    # a newline in a message cannot forge a second log line
    assert second.endswith("INFO fdrouter.test_logs: two\\nlines from a client")


def test_configuring_twice_leaves_one_handler_with_the_new_format(root_restored):
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "text", stream=first)
    configure_logging("warning", "json", stream=second)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_FdrouterHandler"]
    assert len(ours) == 1
    log.info("dropped at warning level")
    log.warning("kept")
    assert first.getvalue() == ""
    assert [r["message"] for r in _records(second)] == ["kept"]


def test_unknown_levels_and_formats_are_refused(root_restored):
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose", "text")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")


@pytest.mark.parametrize("value", ["abc", "0f" * 16, "trace-01.span_02:x/y", "x" * 128, "!~"])
def test_a_short_printable_client_request_id_is_kept(value):
    assert accept_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, "", "x" * 129, "has space", "new\nline", "nul\x00", "tab\there", "del\x7f", "caf\u00e9"]
)
def test_a_missing_or_unsafe_client_request_id_is_replaced_by_a_new_one(value):
    accepted = accept_request_id(value)
    assert accepted != value
    assert re.fullmatch(r"[0-9a-f]{32}", accepted)


def test_new_request_ids_are_unique_hex():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_redact_replaces_every_secret_and_ignores_empty_ones():
    assert redact("key=sk-1 again sk-1, other tok", ["sk-1", "", "tok"]) == "key=*** again ***, other ***"
    assert redact("nothing here", []) == "nothing here"


def test_secrets_never_reach_the_log_in_messages_extras_or_tracebacks(json_lines):
    log.info("auth header Bearer sk-secret-key-123", extra={"header": "Bearer sk-secret-key-123"})
    try:
        raise RuntimeError("rejected key sk-secret-key-123")
    except RuntimeError:
        log.exception("oops")
    out = json_lines.getvalue()
    assert "sk-secret-key-123" not in out
    first, second = _records(json_lines)
    assert first["message"] == "auth header Bearer ***" and first["header"] == "Bearer ***"
    assert "rejected key ***" in second["exc"]


def test_a_secret_with_json_special_characters_is_redacted_in_json_lines(root_restored):
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, secrets=['pa"ss\\word'])
    log.info('login with pa"ss\\word')
    assert _records(stream)[0]["message"] == "login with ***"


def test_text_lines_are_redacted_too(root_restored):
    stream = io.StringIO()
    handler = configure_logging("info", "text", stream=stream, secrets=["hunter2hunter2"])
    handler.formatter.add_secret("late-registered-key")
    log.info("keys hunter2hunter2 and late-registered-key")
    assert stream.getvalue().rstrip().endswith("keys *** and ***")
