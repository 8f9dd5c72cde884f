"""The route handlers: the generation endpoints and the control API (request in).

Each checks its key first (before reading a byte of the body), reads the body with the
client body timeout (``client_guard.read_body``), and leaves errors to ``responses``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web

from .app_state import ACTIVE_KEY, ADMISSION_KEY, CONFIG_KEY, REQUEST_ID, ROUTER_KEY
from .client_guard import read_body
from .errors import (
    ClientDisconnected,
    NoHealthyInstance,
    RouterError,
    ShuttingDown,
    TooManyRequests,
    Unauthorized,
)
from .relay import ClientSink
from .responses import json_response
from .validate import check_generation, parse_json_object

log = logging.getLogger(__name__)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _check_key(request: web.Request, key: str | None, what: str) -> None:
    if key is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates: encode them back the
    # same way, so any byte sequence compares (and fails) instead of raising
    presented = token.strip().encode("utf-8", "surrogateescape")
    # compare_digest: the time taken must not reveal how much of the key matched
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, key.encode()):
        raise Unauthorized(f"missing or invalid {what}: send 'Authorization: Bearer <key>'")


def _auth(request: web.Request) -> None:
    """Inference endpoints: the API key, if one is configured."""
    _check_key(request, request.app[CONFIG_KEY].api_key, "API key")


def _admin(request: web.Request) -> None:
    """State-changing endpoints: the admin key, if one is configured."""
    _check_key(request, request.app[CONFIG_KEY].admin_api_key, "admin API key")


async def _read(request: web.Request) -> bytes:
    config = request.app[CONFIG_KEY]
    return await read_body(request, max_bytes=config.max_body_bytes, idle_timeout=config.client_body_timeout_secs)


async def _read_json(request: web.Request) -> dict:
    return parse_json_object(await _read(request))


async def generation(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions and /v1/completions."""
    request_id = request[REQUEST_ID]
    sink = ClientSink(request, {"X-Request-Id": request_id})
    router = request.app[ROUTER_KEY]
    started = _now()
    status = 499  # until something is answered: the client left
    active = request.app[ACTIVE_KEY]
    task = asyncio.current_task()
    assert task is not None
    try:
        _auth(request)  # before reading a byte of the body: no key, no upload
        raw = await _read(request)
        # a graceful shutdown waits for requests that have arrived, never for one still uploading
        active.add(task)
        body = parse_json_object(raw)
        check_generation(body, request.path)
        async with request.app[ADMISSION_KEY].admit():
            response = await router.generate(
                request.path, raw, body, sink, request_id=request_id, headers=request.headers
            )
        status = response.status
        return response
    except ClientDisconnected:
        log.info("client disconnected from %s mid-stream; upstream closed", request.path)
        assert sink.response is not None
        return sink.response
    except TooManyRequests as error:
        status = error.status
        router.metrics.observe_rejection(error.reason)
        log.warning("rejected: %s", error.message)
        raise
    except RouterError as error:
        status = error.status
        if sink.prepared:
            log.warning("%s failed mid-stream: %s", request.path, error.message)
            return await sink.stream_error(error)
        raise
    except asyncio.CancelledError:
        # The client left (nothing to tell) or the shutdown grace period ran out: then a
        # started stream still ends with an error event rather than a bare cut.
        if sink.prepared and not sink.finished:
            await sink.stream_error(ShuttingDown(
                "the router is shutting down and its grace period ran out before this answer was complete"
            ))
        raise
    finally:
        active.discard(task)
        first = sink.first_byte_at
        router.metrics.observe_request(
            request.path, status, duration_secs=_now() - started,
            ttft_secs=None if first is None else first - started, instance=sink.instance,
        )


async def register(request: web.Request) -> web.Response:
    """POST /register: FastDeploy's instance-info JSON."""
    _admin(request)
    state = await request.app[ROUTER_KEY].register(await _read_json(request))
    return json_response({"status": "success", "instance": state.to_dict(_now())})


async def deregister(request: web.Request) -> web.Response:
    """POST /deregister: same body as /register, or just host_ip and port."""
    _admin(request)
    state = request.app[ROUTER_KEY].deregister(await _read_json(request))
    return json_response({"status": "success", "instance": state.to_dict(_now())})


async def abort_requests(request: web.Request) -> web.Response:
    """POST /v1/abort_requests: forwarded to every instance in the background (admin: it ends others' work)."""
    _admin(request)
    asked = request.app[ROUTER_KEY].abort(await _read_json(request))
    return json_response({"status": "success", "instances": asked})


async def registered(request: web.Request) -> web.Response:
    """GET /registered: every instance with its role, URL, health and load."""
    return json_response({"instances": [s.to_dict(_now()) for s in request.app[ROUTER_KEY].registry.all()]})


async def decode_instances(request: web.Request) -> web.Response:
    """GET /decode_instances[?version=V]: decode instances for a FastDeploy prefill instance to pre-connect to."""
    return json_response(request.app[ROUTER_KEY].decode_instances(request.query.get("version")))


async def registered_number(request: web.Request) -> web.Response:
    """GET /registered_number: registered instances per role."""
    return json_response(request.app[ROUTER_KEY].registry.counts())


async def health(request: web.Request) -> web.Response:
    """GET /health: the router process itself."""
    return json_response({"status": "ok"})


async def health_generate(request: web.Request) -> web.Response:
    """GET /health_generate: probes the instances now; 503 if a needed role has none healthy."""
    healthy = await request.app[ROUTER_KEY].check_instances()
    missing = [role for role, n in healthy.items() if n == 0]
    if missing:
        raise NoHealthyInstance(f"no healthy instance for role(s): {', '.join(missing)}")
    return json_response({"status": "ok", "healthy": healthy})


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body, content_type = request.app[ROUTER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: forwarded to a healthy instance."""
    _auth(request)
    status, body, content_type = await request.app[ROUTER_KEY].models()
    return web.Response(body=body, status=status, content_type=content_type or "application/json")


__all__ = [
    "abort_requests", "decode_instances", "deregister", "generation", "health", "health_generate", "metrics",
    "models", "register", "registered", "registered_number",
]
