"""Talking to instances: one pool for generation, one small aiohttp session for control.

The lesson of FastDeploy's first router (docs/architecture.md): when health checks shared the
generation pool they queued behind hung generation traffic, timed out, and healthy instances
were dropped. So generation traffic (``generation_pool.Http1Pool``, sized for LLM concurrency)
and control traffic (health checks, registration probes, aborts, scrapes: ``control_pool``'s
lanes, with short timeouts) get separate pools,
each created once at start-up and closed at shutdown.

This is the one place where client errors (http1's and aiohttp's) become ``RouterError``s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import aiohttp

from .config import RouterConfig
from .control_pool import ControlLanes, default_lanes
from .errors import RouterError, UpstreamError, UpstreamTimeout
from .generation_pool import ConnectError, Http1Pool, Response, ResponseBroken, ResponseTimeout

log = logging.getLogger(__name__)

class UpstreamClient:
    """The router's two long-lived upstream pools. Use as an async context manager."""

    def __init__(self, config: RouterConfig) -> None:
        self._config = config
        self._generation: Http1Pool | None = None
        self._control: ControlLanes | None = None

    async def __aenter__(self) -> UpstreamClient:
        cfg = self._config
        self._generation = Http1Pool(
            limit=cfg.max_connections,
            limit_per_host=cfg.max_connections_per_host,
            keepalive_timeout=cfg.keepalive_timeout_secs,
            connect_timeout=cfg.connect_timeout_secs,
            total_timeout=cfg.request_timeout_secs,
            first_byte_timeout=cfg.first_byte_timeout_secs,
            idle_timeout=cfg.stream_idle_timeout_secs,
        )
        self._control = await ControlLanes(default_lanes(cfg.health_pool_size, cfg.max_instances),
                                           timeout=cfg.health_check_timeout_secs).__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close both pools; idempotent."""
        if self._generation is not None:
            await self._generation.close()
        if self._control is not None:
            await self._control.close()

    @property
    def generation_pool(self) -> Http1Pool:
        """The keep-alive pool for generation traffic."""
        if self._generation is None:
            raise RuntimeError("UpstreamClient is not started: use 'async with UpstreamClient(config)'")
        return self._generation

    @property
    def control(self) -> ControlLanes:
        """The control pool and its lanes (health, register, abort, scrape, models)."""
        if self._control is None:
            raise RuntimeError("UpstreamClient is not started: use 'async with UpstreamClient(config)'")
        return self._control

    @property
    def control_session(self) -> aiohttp.ClientSession:
        """The control pool's aiohttp session."""
        return self.control.session

    def acquired_connections(self) -> int:
        """Generation connections currently lent to a request (0 when nothing is in flight)."""
        return self.generation_pool.acquired

    @asynccontextmanager
    async def post(
        self, host: str, port: int, path: str, body: bytes, *, leg: str, headers: bytes = b""
    ) -> AsyncIterator[Response]:
        """POST a generation request to ``host:port``; yields the response with headers read.

        ``headers`` are extra header lines, each ending in CRLF (the request id). The response
        is released on normal exit and *closed* on any error or cancellation, so the instance
        sees the disconnect and stops generating.
        """
        try:
            resp = await self.generation_pool.post(host, port, path.encode(), body, headers)
        except Exception as exc:
            _reraise(exc, leg=leg, url=f"http://{host}:{port}{path}")
        try:
            yield resp
        except BaseException as exc:
            resp.close()
            _reraise(exc, leg=leg, url=f"http://{host}:{port}{path}")
        else:
            resp.release()

    async def probe(self, base_url: str, *, lane: str = "health") -> bool:
        """One health check in a control lane: True iff the instance answers 2xx in time."""
        url = base_url + self._config.health_check_endpoint
        try:
            async with self.control.request(lane, "GET", url) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError, UpstreamError) as exc:
            log.debug("health probe %s failed: %r", url, exc)
            return False

    async def control_request(self, method: str, url: str, *, lane: str, json: Any = None
                              ) -> tuple[int, bytes, str]:
        """A small control request in ``lane`` (abort, scrape, models); returns status, body, content type."""
        try:
            async with self.control.request(lane, method, url, json=json) as resp:
                return resp.status, await resp.read(), resp.content_type
        except Exception as exc:
            _reraise(exc, leg="control", url=url)


# ResponseTimeout.kind -> (the setting that fired, error code): the client learns which one
_TIMEOUTS = {
    "total": ("request timeout --request-timeout-secs", "request_timeout"),
    "first_byte": ("first-byte timeout --first-byte-timeout-secs", "first_byte_timeout"),
    "idle": ("stream idle timeout --stream-idle-timeout-secs", "stream_idle_timeout"),
}


def _convert(exc: BaseException, *, leg: str, url: str) -> BaseException | None:
    """The most specific RouterError for a lower-layer error, or None to leave it alone."""
    if isinstance(exc, RouterError) or not isinstance(exc, Exception):
        return None
    if isinstance(exc, ResponseTimeout):
        flag, code = _TIMEOUTS[exc.kind]
        return UpstreamTimeout(f"{leg} instance {url}: {flag} ({exc.seconds:g}s) fired: {exc}", code=code)
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(f"{leg} instance {url} timed out")
    if isinstance(exc, ConnectError):
        return UpstreamError(f"cannot connect to {leg} instance {url}: {exc}")
    if isinstance(exc, ResponseBroken):
        return UpstreamError(f"response from {leg} instance {url} broke off: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"cannot connect to {leg} instance {url}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError(f"response from {leg} instance {url} broke off: {exc}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return UpstreamError(f"{leg} instance {url} failed: {exc.__class__.__name__}: {exc}")
    return None


def _reraise(exc: BaseException, *, leg: str, url: str) -> NoReturn:
    """Raise ``exc`` converted to a RouterError where it maps to one, else unchanged."""
    converted = _convert(exc, leg=leg, url=url)
    if converted is None:
        raise exc
    raise converted from exc


__all__ = ["UpstreamClient"]
