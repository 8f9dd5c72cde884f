"""The KV-events wire format: one JSON object per line, parsed and written without I/O.

An instance answers ``GET /kv_events?epoch=E&since=S`` with a never-ending
``application/x-ndjson`` body (docs/kv_events.md has the whole contract):

    {"type": "hello", "epoch": "9f2c...", "block_tokens": 16, "hash": "fdrouter-blake2b64-text/1",
     "seq": 41, "resume": true}
    {"type": "batch", "seq": 42, "ts": 1718000000.25, "events": [
        {"type": "BlockStored", "block_hashes": [123, 456], "parent_block_hash": null, ...},
        {"type": "BlockRemoved", "block_hashes": [789]},
        {"type": "AllBlocksCleared"}]}
    {"type": "ping", "seq": 42}

Batches and events are vLLM's (``vllm/distributed/kv_events.py``: ``KVEventBatch`` of
``BlockStored``, ``BlockRemoved``, ``AllBlocksCleared``) in JSON, with the sequence number
that vLLM sends as a separate ZMQ frame carried in the batch. A batch marked ``"snapshot":
true`` is the instance's whole cache at ``seq``: ``AllBlocksCleared`` then ``BlockStored``.

Parsing is strict where the index's correctness depends on it (a malformed line, a missing
or ill-typed field, an unknown event type raise ``WireError``: the subscriber resyncs) and
lenient where it does not (unknown fields, and lines of an unknown ``type``, are ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import jsonutil

MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest line accepted. A snapshot of 1M blocks is ~21 MB of keys; anything longer is not a
line this format produces, and buffering it without bound is what an attacker would want."""

_KEY_MIN, _KEY_MAX = -(2**63), 2**64  # vLLM and Dynamo send signed 64-bit hashes; fdrouter unsigned
_INDEXED_MEDIA = (None, "GPU", "gpu")  # vLLM's MEDIUM_GPU; other tiers (CPU offload) are not indexed


class WireError(ValueError):
    """A line that is not what the format says; the subscriber drops the stream and resyncs."""


@dataclass(frozen=True, slots=True)
class Hello:
    """First line of every stream: who is talking and where the stream starts."""

    epoch: str
    """Changes whenever the instance's cache starts from nothing (a restart)."""
    block_tokens: int
    """Tokens per block of the keys (``block_tokens * 4`` characters of prompt text)."""
    hash: str
    """Name of the key scheme (``hashing.HASH_SCHEME``)."""
    seq: int
    """Last sequence number published so far (-1: none yet)."""
    resume: bool
    """True: batches from the client's ``since + 1`` follow. False: a snapshot batch follows."""


@dataclass(frozen=True, slots=True)
class BlockStored:
    """Blocks now cached (their chained keys)."""

    block_hashes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    """Blocks evicted."""

    block_hashes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    """Every block dropped (a cache reset)."""


Event = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True, slots=True)
class Batch:
    """Events published together, in order, under one sequence number."""

    seq: int
    events: tuple[Event, ...]
    snapshot: bool = False
    """The instance's whole cache at ``seq`` (starts with AllBlocksCleared)."""
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive while nothing happens; ``seq`` is the last batch published."""

    seq: int


Line = Hello | Batch | Ping


# -- parsing ------------------------------------------------------------------------------------


def parse_line(raw: bytes | str) -> Line | None:
    """One line (without or with its newline) -> Hello, Batch or Ping; None for a blank line or a
    line of an unknown type. Raises WireError for anything malformed."""
    if not raw.strip():
        return None
    try:
        obj = jsonutil.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # orjson and json errors are ValueErrors
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"a line must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "batch":
        return _batch(obj)
    if kind == "ping":
        return Ping(_int(obj, "seq", minimum=-1))
    if kind == "hello":
        return _hello(obj)
    if not isinstance(kind, str):
        raise WireError("a line needs a string 'type'")
    return None  # an extension this router does not know: ignored


def _int(obj: dict[str, Any], name: str, *, minimum: int) -> int:
    value = obj.get(name)
    if type(value) is not int or value < minimum:
        raise WireError(f"field {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _hello(obj: dict[str, Any]) -> Hello:
    epoch, scheme, resume = obj.get("epoch"), obj.get("hash"), obj.get("resume")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= 128:
        raise WireError(f"hello: 'epoch' must be a string of 1 to 128 characters, got {epoch!r}")
    if not isinstance(scheme, str):
        raise WireError(f"hello: 'hash' must be a string, got {scheme!r}")
    if not isinstance(resume, bool):
        raise WireError(f"hello: 'resume' must be true or false, got {resume!r}")
    return Hello(epoch, _int(obj, "block_tokens", minimum=1), scheme, _int(obj, "seq", minimum=-1), resume)


def _batch(obj: dict[str, Any]) -> Batch:
    seq = _int(obj, "seq", minimum=0)
    events = obj.get("events")
    if not isinstance(events, list):
        raise WireError(f"batch {seq}: 'events' must be a list")
    snapshot = obj.get("snapshot", False)
    if not isinstance(snapshot, bool):
        raise WireError(f"batch {seq}: 'snapshot' must be true or false")
    ts = obj.get("ts", 0.0)
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise WireError(f"batch {seq}: 'ts' must be a number")
    parsed = tuple(e for e in (_event(seq, e) for e in events) if e is not None)
    if snapshot and (not parsed or not isinstance(parsed[0], AllBlocksCleared)):
        raise WireError(f"batch {seq}: a snapshot must start with AllBlocksCleared")
    return Batch(seq, parsed, snapshot, float(ts))


def _event(seq: int, obj: Any) -> Event | None:
    if not isinstance(obj, dict):
        raise WireError(f"batch {seq}: an event must be a JSON object")
    kind = obj.get("type")
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    if kind not in ("BlockStored", "BlockRemoved"):
        raise WireError(f"batch {seq}: unknown event type {kind!r}")
    hashes = obj.get("block_hashes")
    if not isinstance(hashes, list) or not all(type(h) is int and _KEY_MIN <= h < _KEY_MAX for h in hashes):
        raise WireError(f"batch {seq}: {kind} needs 'block_hashes', a list of 64-bit integers")
    if obj.get("medium") not in _INDEXED_MEDIA:
        return None  # a block in another tier (CPU offload): not what prefix matching on the GPU finds
    keys = tuple(h & 0xFFFFFFFFFFFFFFFF for h in hashes)  # signed publishers: the same 64 bits, unsigned
    return BlockStored(keys) if kind == "BlockStored" else BlockRemoved(keys)


class LineBuffer:
    """Reassembles lines from the chunks of a byte stream, each at most ``max_bytes`` long."""

    __slots__ = ("_parts", "_size", "max_bytes")

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk`` (without their newline); WireError if one grows too long."""
        lines = chunk.split(b"\n")
        tail = lines.pop()  # after the last newline: an unfinished line (b"" if none)
        if lines and self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts, self._size = [], 0
        if any(len(line) > self.max_bytes for line in lines):
            raise WireError(f"a line longer than {self.max_bytes} bytes")
        if tail:
            self._parts.append(tail)
            self._size += len(tail)
            if self._size > self.max_bytes:
                raise WireError(f"a line longer than {self.max_bytes} bytes")
        return lines


# -- writing (publishers) ---------------------------------------------------------------------------


def stored(block_hashes: Iterable[int], block_tokens: int) -> dict[str, Any]:
    """A vLLM-shaped ``BlockStored`` event (fdrouter reads only ``block_hashes``)."""
    return {"type": "BlockStored", "block_hashes": list(block_hashes), "parent_block_hash": None,
            "token_ids": [], "block_size": block_tokens, "lora_id": None, "medium": "GPU"}


def removed(block_hashes: Iterable[int]) -> dict[str, Any]:
    """A vLLM-shaped ``BlockRemoved`` event."""
    return {"type": "BlockRemoved", "block_hashes": list(block_hashes), "medium": "GPU"}


CLEARED: dict[str, Any] = {"type": "AllBlocksCleared"}
"""The ``AllBlocksCleared`` event."""


def encode_hello(epoch: str, block_tokens: int, scheme: str, seq: int, resume: bool) -> bytes:
    """The hello line, newline included."""
    return jsonutil.dumps({"type": "hello", "epoch": epoch, "block_tokens": block_tokens, "hash": scheme,
                           "seq": seq, "resume": resume}) + b"\n"


def encode_batch(seq: int, ts: float, events: list[dict[str, Any]], *, snapshot: bool = False) -> bytes:
    """A batch line, newline included."""
    obj: dict[str, Any] = {"type": "batch", "seq": seq, "ts": ts, "events": events}
    if snapshot:
        obj["snapshot"] = True
    return jsonutil.dumps(obj) + b"\n"


def encode_ping(seq: int) -> bytes:
    """A ping line, newline included."""
    return b'{"type":"ping","seq":%d}\n' % seq


__all__ = [
    "CLEARED", "MAX_LINE_BYTES", "AllBlocksCleared", "Batch", "BlockRemoved", "BlockStored", "Event", "Hello", "Line",
    "LineBuffer", "Ping", "WireError", "encode_batch", "encode_hello", "encode_ping", "parse_line", "removed",
    "stored",
]
