"""Logging set-up: one handler, text or JSON lines, every line about a request stamped with its id.

- ``configure_logging(level, fmt)`` installs one handler on the root logger (so aiohttp's and
  asyncio's records come out in the same format) and replaces it when called again.
- ``request_id`` is a ContextVar: aiohttp runs each request in its own task, whose context is a
  copy, so a value set in a middleware belongs to that request and to the tasks it spawns.
  A ContextVar is per-task state, not a shared global.
- Client-provided ids are accepted only if short and printable (``accept_request_id``): they end
  up in log lines and response headers, where newlines or control bytes could forge entries.
- Configured secrets (API keys) are replaced by ``***`` in everything the handler writes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fdrouter_request_id", default=None)
"""The id of the request the current task is serving, or None outside requests."""

# 128: the longest id we pass on (nginx's $request_id is 32 hex chars, a W3C traceparent 55).
# Visible ASCII only: no spaces, no control characters, nothing a terminal or a header mangles.
_VALID_ID = re.compile(r"[\x21-\x7e]{1,128}")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}

# attributes every LogRecord has; anything else on a record came from ``extra=``
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "request_id", "taskName",
}


def new_request_id() -> str:
    """A fresh random id: 32 hex characters, as vLLM's and FastDeploy's own request ids."""
    return os.urandom(16).hex()  # what uuid4().hex draws, without building a UUID (hot path)


def accept_request_id(header_value: str | None) -> str:
    """The client's ``X-Request-Id`` if it is 1..128 visible ASCII characters, else a new id."""
    if header_value is not None and _VALID_ID.fullmatch(header_value):
        return header_value
    return new_request_id()


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    """Set the current request id; give the token to ``reset_request_id`` when the request ends."""
    return request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    """Restore the request id that was current before ``set_request_id``."""
    request_id.reset(token)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``record.request_id``, None outside requests).

    Installed on the handler, not a logger: a logger's filters do not see records propagated
    from its children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # an explicit extra={"request_id": ...} wins: background work may log about a request
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class WorkerIdFilter(logging.Filter):
    """Stamps each record with the worker process's number (``fdrouter serve --workers N``)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class _RedactingFormatter(logging.Formatter):
    """A formatter whose whole output passes through ``redact``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # longest first, so a secret containing another is replaced whole
        self.secrets: tuple[str, ...] = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def add_secret(self, secret: str) -> None:
        """Redact one more string from now on."""
        if secret:
            self.secrets = tuple(sorted({*self.secrets, secret}, key=len, reverse=True))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (stdlib name)
        # ISO 8601 in UTC with milliseconds: sorts as text, parses everywhere
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(_RedactingFormatter):
    """``ts LEVEL logger: message key=value ... request_id=...``; newlines in the message are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        parts = [self.formatTime(record), record.levelname, f"{record.name}:", message]
        for key, value in _extras(record).items():
            text = str(value)
            if not text or any(c.isspace() or c == '"' for c in text):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        rid = getattr(record, "request_id", None)
        if rid is not None:
            parts.append(f"request_id={rid}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)  # tracebacks stay readable, on their own lines
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line, self.secrets)


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line: ts, level, logger, message, request_id (when set), extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            payload["request_id"] = rid
        for key, value in _extras(record).items():
            payload.setdefault(key, value)  # an extra cannot overwrite the fields above
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(payload, default=str, ensure_ascii=False)
        # a secret may appear JSON-escaped inside the line: redact both spellings
        return redact(line, [form for s in self.secrets for form in (json.dumps(s, ensure_ascii=False)[1:-1], s)])


class _FdrouterHandler(logging.StreamHandler):
    """The one stream handler ``configure_logging`` installs; its class marks it for replacement."""


@dataclass(frozen=True)
class LogRetention:
    """How much of a log file's history is kept (FastDeploy's Go router's ``log.*`` keys)."""

    max_age_days: float = 7.0
    """Rotated files older than this are deleted."""
    max_total_size_mb: float = 500.0
    """The file and its rotated copies stay under this (10 files of a tenth each)."""
    cleanup_interval_secs: float = 3600.0
    """How often, at most, rotated files are checked for age."""


class RetentionFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file whose copies are also deleted by age: bounded in size and in time.

    Rotation (the standard library's): at a tenth of the total size, keeping 9 copies. Age: on
    every rotation, and at most every ``cleanup_interval_secs`` while logging, copies older than
    ``max_age_days`` are deleted.
    """

    COPIES = 9

    def __init__(self, path: str | os.PathLike[str], retention: LogRetention) -> None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        max_bytes = max(1024, int(retention.max_total_size_mb * 1024 * 1024 / (self.COPIES + 1)))
        super().__init__(path, maxBytes=max_bytes, backupCount=self.COPIES, encoding="utf-8")
        self.retention = retention
        self._next_cleanup = 0.0
        self.delete_old_copies()

    def copies(self) -> list[str]:
        """The rotated copies that exist now (``router.log.1`` ...)."""
        base = self.baseFilename
        return [f"{base}.{i}" for i in range(1, self.COPIES + 1) if os.path.exists(f"{base}.{i}")]

    def delete_old_copies(self) -> None:
        """Delete rotated copies older than ``max_age_days``."""
        horizon = time.time() - self.retention.max_age_days * 86400
        for copy in self.copies():
            try:
                if os.path.getmtime(copy) < horizon:
                    os.remove(copy)
            except OSError:
                pass  # gone already, or not ours to delete: the next cleanup tries again
        self._next_cleanup = time.monotonic() + self.retention.cleanup_interval_secs

    def doRollover(self) -> None:  # noqa: N802 (stdlib name)
        super().doRollover()
        self.delete_old_copies()

    def emit(self, record: logging.LogRecord) -> None:
        if time.monotonic() >= self._next_cleanup:
            self.delete_old_copies()
        super().emit(record)


class _FdrouterFileHandler(RetentionFileHandler):
    """The file handler ``configure_logging`` installs; its class marks it for replacement."""


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    secrets: Iterable[str | None] = (),
    stream: IO[str] | None = None,
    output: str = "stderr",
    file: str | os.PathLike[str] = "logs/router.log",
    retention: LogRetention | None = None,
    worker: int | None = None,
) -> logging.Handler:
    """Install (or replace) the router's log handler on the root logger and return it.

    ``level`` is a level name (debug, info, warning, error, critical); ``fmt`` is ``text`` or
    ``json``; ``secrets`` (None entries are skipped, so ``[config.api_key]`` works) are
    replaced by ``***`` in every line. ``output`` is ``stderr`` (or ``stream`` if given),
    ``stdout``, or ``file``: ``file`` rotated and pruned by ``retention``. ``worker`` (a worker
    process's number) is added to every line as ``worker=N``. Idempotent: a second call replaces
    the first call's handler, so exactly one is installed.
    """
    levelno = _LEVELS.get(level.lower())
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning, error or critical")
    clean = [s for s in secrets if s]
    if fmt == "text":
        formatter: _RedactingFormatter = TextFormatter(clean)
    elif fmt == "json":
        formatter = JsonFormatter(clean)
    else:
        raise ValueError(f"unknown log format {fmt!r}; use text or json")
    handler: logging.Handler
    if output == "file":
        handler = _FdrouterFileHandler(file, retention or LogRetention())
    elif output in ("stderr", "stdout"):
        handler = _FdrouterHandler(stream if stream is not None else getattr(sys, output))
    else:
        raise ValueError(f"unknown log output {output!r}; use stderr, stdout or file")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, (_FdrouterHandler, _FdrouterFileHandler))]:
        root.removeHandler(old)
        old.close()
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    if worker is not None:
        handler.addFilter(WorkerIdFilter(worker))
    root.addHandler(handler)
    root.setLevel(levelno)
    return handler


__all__ = [
    "JsonFormatter",
    "LogRetention",
    "RequestIdFilter",
    "RetentionFileHandler",
    "TextFormatter",
    "WorkerIdFilter",
    "accept_request_id",
    "configure_logging",
    "new_request_id",
    "redact",
    "request_id",
    "reset_request_id",
    "set_request_id",
]
