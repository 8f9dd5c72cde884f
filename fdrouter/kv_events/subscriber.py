"""The router's background subscriptions to the instances' KV events, on the control pool.

One long-lived ``GET /kv_events`` stream per instance of a role whose policy needs
``kv_events``, each holding a place in the control pool's ``kv_events`` lane (never a
generation connection, never one per request). A supervisor round every ``retry_secs``
reconciles the streams with the registry:

- a registered, routable instance without a stream gets one;
- a deregistered instance loses its stream and its slot in the index (the router's
  ``forget`` already dropped its blocks);
- an instance that is no longer routable (health went unhealthy) loses its stream and its
  blocks: when it comes back it may be a new process, so it starts from a snapshot.

A stream that breaks (connection refused, reset, idle past ``idle_timeout``) is reopened with
its cursor, so the instance replays what was missed; a gap or a malformed line (``Resync``)
drops the instance's blocks and reopens without a cursor, for a snapshot. Reconnects back off
exponentially up to ``max_retry_secs``. All parsing and bookkeeping is in ``stream.StreamState``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from ..errors import RouterError
from ..instances import Role
from ..periodic import Periodic
from ..registry import InstanceState, Registry
from ..upstream import UpstreamClient
from .hashing import HASH_SCHEME
from .index import KvIndex
from .stream import Incompatible, Resync, StreamState
from .wire import LineBuffer, WireError

log = logging.getLogger(__name__)

LANE = "kv_events"
"""The control-pool lane the streams hold their connections in."""


@dataclass(frozen=True, slots=True)
class Feed:
    """Where one role's events go: its policy's index, and the block size its keys use."""

    index: KvIndex
    block_tokens: int


def feeds_for(policies: Mapping[Role, object]) -> dict[Role, Feed]:
    """A feed per role whose policy needs ``kv_events``, from its ``kv_index`` and ``block_tokens``."""
    feeds = {}
    for role, policy in policies.items():
        if "kv_events" not in getattr(policy, "needs", ()):
            continue
        index, block_tokens = getattr(policy, "kv_index", None), getattr(policy, "block_tokens", None)
        if not isinstance(index, KvIndex) or type(block_tokens) is not int:
            raise TypeError(f"policy {getattr(policy, 'name', policy)!r} needs kv_events but has no "
                            "'kv_index' (a KvIndex) and 'block_tokens' (an int)")
        feeds[role] = Feed(index, block_tokens)
    return feeds


class _Follower:
    """One instance's stream task and state."""

    __slots__ = ("state", "stream", "task")

    def __init__(self, state: InstanceState, stream: StreamState, task: asyncio.Task) -> None:
        self.state, self.stream, self.task = state, stream, task


class KvEventSubscriber(Periodic):
    """Keeps one event stream open per subscribed instance (see the module docstring)."""

    task_name = "fdrouter-kv-events"

    def __init__(
        self, registry: Registry, upstream: UpstreamClient, feeds: Mapping[Role, Feed], *, path: str,
        idle_timeout: float, connect_timeout: float, retry_secs: float, max_retry_secs: float = 30.0,
    ) -> None:
        super().__init__(interval=retry_secs, immediate=True)
        self._registry = registry
        self._upstream = upstream
        self._feeds = dict(feeds)
        self._path = path
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=idle_timeout)
        self._retry = retry_secs
        self._max_retry = max(max_retry_secs, retry_secs)
        self._followers: dict[str, _Follower] = {}
        self._rng = random.Random()  # reconnect jitter only

    def streams(self) -> dict[str, StreamState]:
        """The stream state of every instance followed now, by URL."""
        return {url: f.stream for url, f in self._followers.items()}

    async def run_round(self) -> None:
        """One supervisor round: reconcile the streams with the registry."""
        self.reconcile()
        self.rounds += 1

    def reconcile(self) -> None:
        """Open, close and reset streams so that exactly the routable subscribed instances have one."""
        wanted = {s.url: s for s in self._registry.all() if s.role in self._feeds and s.health.state.routable}
        for url, follower in list(self._followers.items()):
            current = wanted.get(url)
            if current is follower.state and not follower.task.done():
                continue
            del self._followers[url]
            task = follower.task
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("KV events of %s: the stream task failed; restarting it", url, exc_info=task.exception())
            task.cancel()
            feed = self._feeds[follower.state.role]
            if self._registry.get(follower.state.info.key) is not follower.state:
                feed.index.drop(url)  # deregistered (perhaps registered again: a new instance)
            else:
                feed.index.clear(url)  # unhealthy: what it caches when it is back is unknown
        for url, state in wanted.items():
            if url not in self._followers:
                feed = self._feeds[state.role]
                stream = StreamState(url, feed.index, block_tokens=feed.block_tokens, scheme=HASH_SCHEME)
                task = asyncio.create_task(self._follow(state, stream), name=f"{self.task_name} {url}")
                self._followers[url] = _Follower(state, stream, task)

    async def stop(self) -> None:
        """Stop the supervisor and every stream."""
        await super().stop()
        followers, self._followers = list(self._followers.values()), {}
        for follower in followers:
            follower.task.cancel()
        await asyncio.gather(*(f.task for f in followers), return_exceptions=True)

    async def _follow(self, state: InstanceState, stream: StreamState) -> None:
        """Read the stream, reconnecting for ever (until cancelled by reconcile or stop)."""
        delay, failures = self._retry, 0  # failures in a row: only the first is logged loudly
        while True:
            accepted = stream.lines
            try:
                await self._read(state, stream)  # returns when the instance ends the stream cleanly
                failures = 0
            except Resync as exc:
                log.warning("KV events of %s: %s; resyncing from a snapshot", state.url, exc)
                stream.reset()
            except Incompatible as exc:
                if not failures:
                    log.error("KV events of %s not indexed: %s", state.url, exc)
                stream.reset()
                failures, delay = failures + 1, self._max_retry
            except (RouterError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                message = exc.message if isinstance(exc, RouterError) else f"{type(exc).__name__}: {exc}"
                failures = 0 if stream.lines > accepted else failures
                log.log(logging.DEBUG if failures else logging.WARNING,
                        "KV events of %s: %s; reconnecting with the cursor kept", state.url, message)
                failures += 1
            if stream.lines > accepted:  # it worked for a while: start the backoff over
                delay = self._retry
            await asyncio.sleep(self._rng.uniform(delay / 2, delay))
            delay = min(delay * 2, self._max_retry)

    async def _read(self, state: InstanceState, stream: StreamState) -> None:
        query = stream.query()
        url = state.url + self._path + ("?" + urlencode(query) if query else "")
        async with self._upstream.control.request(LANE, "GET", url, timeout=self._timeout) as resp:
            if resp.status != 200:
                raise _Refused(f"GET {self._path} answered HTTP {resp.status}")
            lines = LineBuffer()
            async for chunk in resp.content.iter_any():
                try:
                    for line in lines.feed(chunk):
                        stream.feed(line)
                except WireError as exc:
                    raise Resync(str(exc)) from None


class _Refused(aiohttp.ClientError):
    """The instance answered the subscription with something other than 200 (e.g. 404: no events)."""


__all__ = ["LANE", "Feed", "KvEventSubscriber", "feeds_for"]
