"""The route handlers: the generation endpoints and the control API (request in).

Each checks its key first (before reading a byte of the body), reads the body with the
client body timeout (``client_guard.read_body``), and leaves errors to ``responses``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from .app_state import CONFIG_KEY, GENERATION_KEY, REQUEST_ID, ROUTER_KEY, WORKER_KEY
from .client_guard import read_body
from .errors import (
    NoHealthyInstance,
)
from .generation_service import check_bearer
from .relay import ClientSink
from .responses import json_response
from .validate import parse_json_object

log = logging.getLogger(__name__)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _check_key(request: web.Request, key: str | None, what: str) -> None:
    check_bearer(request.headers.get("Authorization"), key, what)


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
    """POST /v1/chat/completions and /v1/completions, through the shared GenerationService."""
    request_id = request[REQUEST_ID]
    config = request.app[CONFIG_KEY]
    sink = ClientSink(request, {"X-Request-Id": request_id}, max_body=config.max_response_bytes,
                      write_timeout=config.client_write_timeout_secs)
    await request.app[GENERATION_KEY].serve(request.path, request.headers, lambda: _read(request), sink,
                                            request_id)
    if sink.response is None:  # the client left before anything was answered: nothing to send
        return web.Response(status=499)
    return sink.response


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
    """GET /health: the router process itself (and, in a multi-worker router, which worker answered)."""
    worker = request.app.get(WORKER_KEY)
    if worker is None:
        return json_response({"status": "ok"})
    return json_response({"status": "ok", "worker": worker, "pid": os.getpid()})


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
