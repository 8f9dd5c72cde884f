"""JSON on the hot path: orjson when installed (``pip install fdrouter[speed]``), else json.

orjson parses request bodies ~3-5x faster than json; the fallback keeps the router
working on a bare install. Both ``dumps`` return bytes. The two backends accept the same
documents: standard JSON only (RFC 8259), so ``NaN``, ``Infinity`` and numbers that overflow a
double (``1e999``) are refused by both -- orjson refuses them natively, the fallback is told
to -- and ``dumps`` never writes them. Nesting depth is bounded by the caller
(``validate.parse_json_object``), the same way for both.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

loads: Callable[[bytes | str], Any]


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} does not fit a double")
    return value


try:
    import orjson

    loads = orjson.loads
    JSONDecodeError: type[Exception] = orjson.JSONDecodeError

    def dumps(obj: Any) -> bytes:
        """Serialise to UTF-8 bytes."""
        return orjson.dumps(obj)

    BACKEND = "orjson"
except ImportError:  # pragma: no cover - exercised on bare installs (tests/test_jsonutil.py runs it)
    loads = functools.partial(json.loads, parse_constant=_refuse_constant, parse_float=_finite_float)
    JSONDecodeError = json.JSONDecodeError

    def dumps(obj: Any) -> bytes:
        """Serialise to UTF-8 bytes (never NaN or Infinity: ValueError instead)."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    BACKEND = "json"


__all__ = ["BACKEND", "JSONDecodeError", "dumps", "loads"]
