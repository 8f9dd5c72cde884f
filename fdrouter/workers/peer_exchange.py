"""Messages between the processes of one router (workers and supervisor), never waited for.

Each process binds a Unix datagram socket in the router's state directory. ``send`` only
appends to an outbox; once per event-loop iteration the outbox goes out as one datagram per
peer, with a non-blocking ``sendto``: a peer that is slow, restarting or gone costs a dropped
datagram, never a wait. What travels here is advisory (what another worker's cache-aware
policy decided, a request to probe an instance now): losing some of it makes routing a little
less informed, never wrong.

Wire format: a datagram is UTF-8 JSON lines, one message object per line, at most
``MAX_DATAGRAM`` bytes; a message larger than that is dropped (the sender trims what it sends,
e.g. prompt text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import jsonutil

log = logging.getLogger(__name__)

MAX_DATAGRAM = 60_000
"""Bytes per datagram (Linux allows ~200 KB for Unix datagrams by default; this leaves room)."""
_BUFFER = 4 * 1024 * 1024  # socket buffers: a burst of decisions waits here rather than being dropped


class PeerExchange:
    """One process's end: ``send`` to every peer, ``on_message`` for what arrives."""

    def __init__(self, directory: str | os.PathLike[str], me: str, peers: Iterable[str],
                 on_message: Callable[[dict[str, Any]], None]) -> None:
        self.directory = Path(directory)
        self.me = me
        self.peers = [p for p in peers if p != me]
        self.on_message = on_message
        self.sent = self.dropped = self.received = 0
        self._outbox: dict[tuple[str, ...], list[bytes]] = {}  # destinations -> messages
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False

    def path(self, name: str) -> str:
        """The socket path of process ``name``."""
        return str(self.directory / f"{name}.sock")

    def start(self) -> None:
        """Bind this process's socket and start receiving (call on the running loop)."""
        path = self.path(self.me)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous incarnation of this worker
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        sock.setblocking(False)
        sock.bind(path)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop receiving and remove the socket (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(self.me))

    def send(self, message: dict[str, Any], *, to: Iterable[str] | None = None) -> None:
        """Queue a message for ``to`` (default: every peer); it leaves at the end of this loop iteration."""
        targets = tuple(self.peers if to is None else (p for p in to if p != self.me))
        if self._sock is None or not targets:
            return
        self._outbox.setdefault(targets, []).append(jsonutil.dumps(message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for targets, messages in outbox.items():
            self._send_all(targets, messages)

    def _send_all(self, targets: tuple[str, ...], messages: list[bytes]) -> None:
        for datagram in _pack(messages):
            for peer in targets:
                try:
                    self._sock.sendto(datagram, self.path(peer))  # type: ignore[union-attr]
                    self.sent += 1
                except (BlockingIOError, ConnectionRefusedError, FileNotFoundError, OSError):
                    self.dropped += 1  # the peer is slow, restarting or gone: never wait for it

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                datagram = sock.recv(MAX_DATAGRAM + 1024)
            except (BlockingIOError, InterruptedError):
                return
            for line in datagram.split(b"\n"):
                if not line:
                    continue
                try:
                    message = jsonutil.loads(line)
                except ValueError:
                    log.warning("dropped a malformed message from a peer process")
                    continue
                self.received += 1
                try:
                    self.on_message(message)
                except Exception:  # one bad message must not stop the others
                    log.exception("handling a message from a peer process failed")
            sock = self._sock


def _pack(messages: list[bytes]) -> Iterable[bytes]:
    """Messages joined by newlines into datagrams of at most MAX_DATAGRAM bytes."""
    batch: list[bytes] = []
    size = 0
    for message in messages:
        if len(message) > MAX_DATAGRAM:
            continue  # the sender should have trimmed it
        if size + len(message) + 1 > MAX_DATAGRAM:
            yield b"\n".join(batch)
            batch, size = [], 0
        batch.append(message)
        size += len(message) + 1
    if batch:
        yield b"\n".join(batch)


__all__ = ["MAX_DATAGRAM", "PeerExchange"]
