"""States of a generation connection and of the answer it carries, written as tables.

A connection (``generation_connection.Connection``) is in one of four states, as httpcore's
HTTP/1.1 connection (``HTTPConnectionState`` in httpcore/_async/http11.py):

    state    meaning                                        may become
    new      TCP connection just opened, never lent         active, closed
    active   lent to one request; its answer is in flight   idle, closed
    idle     in the pool's idle list, kept alive            active, closed
    closed   closed or aborted, by either side: final       -

An active connection carries one answer (``Response``); its phase says how far the answer got.
The rows are phases, the columns what can happen, a cell the next phase ("-": illegal):

    phase      begin   info   headers  headers_eof  complete  eof       fail      settle
    sent       head    -      -        -            -         failed*   failed    settled
    head       head    head   body     body_eof     head      failed    failed    settled
    body       -       -      -        -            complete  failed    failed    settled
    body_eof   -       -      -        -            complete  complete  failed    settled
    complete   -       -      -        -            -         complete  complete  settled
    failed     failed  failed failed   failed       failed    failed    failed    settled
    settled    -       -      -        -            -         -         settled   -

- sent: the request is written and no answer byte has come. A connection that closes now
  fails with ``NoAnswer`` (*): the request never reached a live handler, so the pool may
  retry it once when the connection was a reused idle one.
- begin: the first byte of an answer (the parser's on_message_begin). Another answer may
  begin in head: the one after a 1xx.
- info: a 1xx informational answer's headers; it is skipped and its end ("complete" in head)
  leaves the phase at head, as h11 skips them (``InformationalResponse``). 101 Switching
  Protocols is not skipped but a failure: the router never asks to upgrade.
- headers / headers_eof: the final answer's headers; the body is framed by Content-Length or
  chunked coding (body), or by the connection closing (body_eof, RFC 9112 section 6.3 rule 8).
- eof: the instance closed the connection. That completes a body_eof answer and fails any
  other unfinished one.
- fail: broken bytes, a timeout, or the caller's close(). A complete answer stays complete
  (its bytes are all here); a failed one ignores everything but settle, because its
  connection is being aborted and the parser may still report what it had in hand.
- settle: released or closed; the connection is no longer this answer's.

A transition the table does not allow raises ``IllegalTransition``: a bug in the pool, never
something an instance can cause (whatever bytes it sends end in failed).
"""

from __future__ import annotations

import enum

__all__ = ["ConnState", "Event", "IllegalTransition", "Phase", "next_phase", "check_conn_transition"]


class IllegalTransition(RuntimeError):
    """The pool asked for a state change its tables do not allow (a bug, not an instance's fault)."""


class ConnState(enum.Enum):
    """State of one pooled connection."""

    NEW = "new"
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"

    # Members are singletons compared by identity; Enum's own __hash__ hashes the name in Python,
    # which made each table lookup several times slower on the per-request path.
    __hash__ = object.__hash__


class Phase(enum.Enum):
    """How far the answer on an active connection got."""

    SENT = "sent"
    HEAD = "head"
    BODY = "body"
    BODY_EOF = "body_eof"
    COMPLETE = "complete"
    FAILED = "failed"
    SETTLED = "settled"

    __hash__ = object.__hash__


class Event(enum.Enum):
    """What can happen to an answer."""

    BEGIN = "begin"
    INFO = "info"
    HEADERS = "headers"
    HEADERS_EOF = "headers_eof"
    COMPLETE = "complete"
    EOF = "eof"
    FAIL = "fail"
    SETTLE = "settle"

    __hash__ = object.__hash__


NEW, ACTIVE, IDLE, CLOSED = ConnState.NEW, ConnState.ACTIVE, ConnState.IDLE, ConnState.CLOSED

_CONN_NEXT: dict[ConnState, frozenset[ConnState]] = {
    NEW: frozenset({ACTIVE, CLOSED}),
    ACTIVE: frozenset({IDLE, CLOSED}),
    IDLE: frozenset({ACTIVE, CLOSED}),
    CLOSED: frozenset(),
}

SENT, HEAD, BODY, BODY_EOF = Phase.SENT, Phase.HEAD, Phase.BODY, Phase.BODY_EOF
COMPLETE, FAILED, SETTLED = Phase.COMPLETE, Phase.FAILED, Phase.SETTLED
_E = Event

_PHASES: dict[Phase, dict[Event, Phase]] = {
    SENT: {_E.BEGIN: HEAD, _E.EOF: FAILED, _E.FAIL: FAILED, _E.SETTLE: SETTLED},
    HEAD: {_E.BEGIN: HEAD, _E.INFO: HEAD, _E.HEADERS: BODY, _E.HEADERS_EOF: BODY_EOF, _E.COMPLETE: HEAD,
           _E.EOF: FAILED, _E.FAIL: FAILED, _E.SETTLE: SETTLED},
    BODY: {_E.COMPLETE: COMPLETE, _E.EOF: FAILED, _E.FAIL: FAILED, _E.SETTLE: SETTLED},
    BODY_EOF: {_E.COMPLETE: COMPLETE, _E.EOF: COMPLETE, _E.FAIL: FAILED, _E.SETTLE: SETTLED},
    COMPLETE: {_E.EOF: COMPLETE, _E.FAIL: COMPLETE, _E.SETTLE: SETTLED},
    FAILED: {**{event: FAILED for event in Event}, _E.SETTLE: SETTLED},
    SETTLED: {_E.FAIL: SETTLED},
}


def next_phase(phase: Phase, event: Event) -> Phase:
    """The phase an answer moves to on ``event``; raises IllegalTransition where the table has "-"."""
    try:
        return _PHASES[phase][event]
    except KeyError:
        raise IllegalTransition(f"answer in phase {phase.value}: {event.value} is not allowed") from None


def check_conn_transition(old: ConnState, new: ConnState) -> None:
    """Raise IllegalTransition unless a connection may go from ``old`` to ``new``."""
    if new not in _CONN_NEXT[old]:
        raise IllegalTransition(f"connection {old.value} -> {new.value} is not allowed")
