"""Helpers for model servers: register with a router, with retries, and stay registered."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


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


async def register_instance(
    router_url: str,
    info: dict[str, Any],
    *,
    retries: int = 5,
    backoff_secs: float = 0.5,
    max_backoff_secs: float = 10.0,
    timeout_secs: float = 5.0,
    admin_api_key: str | None = None,
) -> dict:
    """POST ``info`` (FastDeploy's instance-info dict) to ``router_url/register``.

    Retries connection errors, timeouts and 5xx answers with exponential backoff and
    jitter; a 4xx answer is the router saying the body (or the key) is wrong, so it is
    raised at once. ``admin_api_key`` is sent as a bearer token when the router wants one.
    Returns the router's JSON answer.
    """
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
    router_url: str, info: dict[str, Any], *, interval_secs: float = 10.0, **kwargs: Any
) -> None:
    """Re-register every ``interval_secs`` until cancelled, so a restarted router learns of us again.

    Registration is idempotent on the router, so re-posting is safe. Failures are logged
    and retried next interval; the loop never ends by itself.
    """
    while True:
        try:
            await register_instance(router_url, info, **kwargs)
        except RegistrationError as exc:
            log.warning("keep_registered: %s", exc)
        await asyncio.sleep(interval_secs)


__all__ = ["RegistrationError", "keep_registered", "register_instance", "register_instance_sync"]
