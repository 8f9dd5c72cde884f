"""Helpers for model servers: register with a router, with retries, and stay registered.

Like a FastDeploy engine's ``RegisterManager`` (``engine/register_manager.py``): the body is the
instance info plus, when given, ``version``, ``is_paused`` and ``connected_decodes``, and
``keep_registered`` re-posts it every 5 s as a heartbeat (the router answers a heartbeat of a
healthy instance without probing it).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

log = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_SECS = 5.0
"""FastDeploy's heartbeat interval (``RegisterManager._sleep_seconds``)."""


class RegistrationError(RuntimeError):
    """The router refused the registration (4xx) or could not be reached after every retry."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def _post_register(session: aiohttp.ClientSession, url: str, info: dict, headers: dict) -> dict:
    async with session.post(url, json=info, headers=headers) as resp:
        text = await resp.text()
        if resp.status == 200:
            return await resp.json(content_type=None)
        raise RegistrationError(f"router answered HTTP {resp.status}: {text[:500]}", status=resp.status)


def heartbeat_body(
    info: dict[str, Any], *, version: str | None = None, is_paused: bool | None = None,
    connected_decodes: list[dict] | None = None,
) -> dict[str, Any]:
    """``info`` with FastDeploy's heartbeat fields added, those given (None: left as ``info`` has them)."""
    body = dict(info)
    for name, value in (("version", version), ("is_paused", is_paused), ("connected_decodes", connected_decodes)):
        if value is not None:
            body[name] = value
    return body


async def register_instance(
    router_url: str,
    info: dict[str, Any],
    *,
    retries: int = 5,
    backoff_secs: float = 0.5,
    max_backoff_secs: float = 10.0,
    timeout_secs: float = 5.0,
    admin_api_key: str | None = None,
    version: str | None = None,
    is_paused: bool | None = None,
    connected_decodes: list[dict] | None = None,
) -> dict:
    """POST ``info`` (FastDeploy's instance-info dict) to ``router_url/register``.

    ``version``, ``is_paused`` and ``connected_decodes`` are added to the body when given, as
    FastDeploy's engines send them (a paused instance gets no new requests). Retries
    connection errors, timeouts and 5xx answers with exponential backoff and jitter; a 4xx
    answer is the router saying the body (or the key) is wrong, so it is raised at once.
    ``admin_api_key`` is sent as a bearer token when the router wants one. Returns the
    router's JSON answer.
    """
    info = heartbeat_body(info, version=version, is_paused=is_paused, connected_decodes=connected_decodes)
    url = router_url.rstrip("/") + "/register"
    headers = {"Authorization": f"Bearer {admin_api_key}"} if admin_api_key else {}
    delay = backoff_secs
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_secs)) as session:
        for attempt in range(retries + 1):
            try:
                return await _post_register(session, url, info, headers)
            except RegistrationError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    raise
                error: Exception = exc
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = exc
            if attempt == retries:
                raise RegistrationError(f"could not register with {url} after {retries + 1} attempts: {error}")
            log.info("registering with %s failed (%s); retrying in %.2fs", url, error, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, max_backoff_secs)
    raise AssertionError("unreachable")


def register_instance_sync(router_url: str, info: dict[str, Any], **kwargs: Any) -> dict:
    """Blocking :func:`register_instance`, for code without an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(register_instance(router_url, info, **kwargs))
    raise RuntimeError("register_instance_sync called inside a running event loop; await register_instance()")


async def keep_registered(
    router_url: str,
    info: dict[str, Any],
    *,
    interval_secs: float = HEARTBEAT_SECS,
    version: str | None = None,
    is_paused: bool | Callable[[], bool] | None = None,
    connected_decodes: list[dict] | Callable[[], list[dict]] | None = None,
    **kwargs: Any,
) -> None:
    """Re-register every ``interval_secs`` (FastDeploy's heartbeat: 5 s) until cancelled, so the
    router sees the current state and a restarted router learns of us again.

    ``is_paused`` and ``connected_decodes`` may be callables, asked anew for each heartbeat.
    Registration is idempotent on the router, so re-posting is safe. Failures are logged and
    retried next interval; the loop never ends by itself.
    """
    while True:
        try:
            await register_instance(router_url, info, version=version, is_paused=_now(is_paused),
                                    connected_decodes=_now(connected_decodes), **kwargs)
        except RegistrationError as exc:
            log.warning("keep_registered: %s", exc)
        await asyncio.sleep(interval_secs)


def _now(value: T | Callable[[], T]) -> T:
    return value() if callable(value) else value


__all__ = ["HEARTBEAT_SECS", "RegistrationError", "heartbeat_body", "keep_registered", "register_instance",
           "register_instance_sync"]
