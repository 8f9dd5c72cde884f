"""The HTTP face of the router (aiohttp.web): routes, error rendering and RouterServer.

Every error leaves through ``error_middleware`` in the OpenAI shape
``{"error": {"message", "type", "code"}}``; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import jsonutil
from .admission import AdmissionControl
from .config import RouterConfig
from .errors import (
    ClientDisconnected,
    HttpError,
    MethodNotAllowed,
    NoHealthyInstance,
    NotFound,
    PayloadTooLarge,
    RouterError,
    ShuttingDown,
    TooManyRequests,
    Unauthorized,
    UpstreamStatus,
)
from .logs import accept_request_id, reset_request_id, set_request_id
from .relay import ClientSink
from .router import Router
from .router_metrics import RouterMetrics
from .validate import CHAT, COMPLETIONS, check_generation, parse_json_object

log = logging.getLogger(__name__)

ROUTER_KEY = web.AppKey("router", Router)
CONFIG_KEY = web.AppKey("config", RouterConfig)
ADMISSION_KEY = web.AppKey("admission", AdmissionControl)
ACTIVE_KEY = web.AppKey("active_generations", set)  # handler tasks of running generation requests
REQUEST_ID = web.RequestKey("request_id", str)


def _now() -> float:
    return asyncio.get_running_loop().time()


def json_response(data: object, status: int = 200) -> web.Response:
    """A JSON response from a Python object."""
    return web.Response(body=jsonutil.dumps(data), status=status, content_type="application/json")


def error_response(error: RouterError) -> web.Response:
    """Render any RouterError; an instance's own error answer passes through unchanged."""
    if isinstance(error, UpstreamStatus):
        return web.Response(
            body=error.body, status=error.status,
            headers={"Content-Type": error.content_type, "X-Fdrouter-Failed-Leg": error.leg},
        )
    response = json_response(error.to_dict(), status=error.status)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _http_exception_error(request: web.Request, exc: web.HTTPException) -> RouterError:
    config = request.app[CONFIG_KEY]
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.status == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if exc.status == 413:
        return PayloadTooLarge(f"request body is over the limit of {config.max_body_bytes} bytes")
    return HttpError(exc.status, exc.reason or "HTTP error")


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Take or make the request id, then convert every error to the OpenAI error shape."""
    request_id = accept_request_id(request.headers.get("X-Request-Id"))
    request[REQUEST_ID] = request_id
    token = set_request_id(request_id)
    try:
        response = await _handle(request, handler)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    finally:
        reset_request_id(token)


async def _handle(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_exception_error(request, exc))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(RouterError("internal router error; see the router log"))


def _check_key(request: web.Request, key: str | None, what: str) -> None:
    if key is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    # compare_digest: the time taken must not reveal how much of the key matched
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise Unauthorized(f"missing or invalid {what}: send 'Authorization: Bearer <key>'")


def _auth(request: web.Request) -> None:
    """Inference endpoints: the API key, if one is configured."""
    _check_key(request, request.app[CONFIG_KEY].api_key, "API key")


def _admin(request: web.Request) -> None:
    """State-changing endpoints: the admin key, if one is configured."""
    _check_key(request, request.app[CONFIG_KEY].admin_api_key, "admin API key")


async def _read_json(request: web.Request) -> dict:
    return parse_json_object(await request.read())


async def generation(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions and /v1/completions."""
    request_id = request[REQUEST_ID]
    sink = ClientSink(request, {"X-Request-Id": request_id})
    router = request.app[ROUTER_KEY]
    started = _now()
    status = 499  # until something is answered: the client left
    active = request.app[ACTIVE_KEY]
    task = asyncio.current_task()
    active.add(task)
    try:
        _auth(request)
        raw = await request.read()
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
    except web.HTTPException as exc:  # 413 from reading an oversized body
        status = exc.status
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


def build_app(config: RouterConfig) -> web.Application:
    """The aiohttp application; the Router lives in its lifecycle (cleanup_ctx)."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG_KEY] = config

    app[ACTIVE_KEY] = set()
    app[ADMISSION_KEY] = AdmissionControl(
        max_concurrent=config.max_concurrent_requests,
        queue_size=config.queue_size,
        queue_timeout_secs=config.queue_timeout_secs,
    )

    async def router_ctx(app: web.Application) -> AsyncIterator[None]:
        admission = app[ADMISSION_KEY]
        metrics = RouterMetrics(admission=lambda: (admission.active, admission.queued))
        async with Router(config, metrics=metrics) as router:
            app[ROUTER_KEY] = router
            yield

    app.cleanup_ctx.append(router_ctx)
    app.router.add_post(CHAT, generation)
    app.router.add_post(COMPLETIONS, generation)
    app.router.add_post("/register", register)
    app.router.add_post("/deregister", deregister)
    app.router.add_post("/v1/abort_requests", abort_requests)
    app.router.add_get("/registered", registered)
    app.router.add_get("/registered_number", registered_number)
    app.router.add_get("/health", health)
    app.router.add_get("/health_generate", health_generate)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    return app


class RouterServer:
    """A running router: binds, serves in the background of the current loop, stops on exit.

    ``async with RouterServer(config) as server:`` works in tests, notebooks and model
    servers alike; ``server.url`` is where it listens (port 0 picks a free port).
    """

    def __init__(self, config: RouterConfig, *, shutdown_timeout: float | None = None) -> None:
        """``shutdown_timeout`` (default: the config's grace period) is how long close() lets
        in-flight requests finish before cancelling them."""
        self.config = config
        self.app = build_app(config)
        if shutdown_timeout is None:
            shutdown_timeout = config.shutdown_grace_period_secs
        self.shutdown_timeout = shutdown_timeout
        # generation requests are drained by close() itself; aiohttp's own wait only has
        # short control requests left to finish by then
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=min(shutdown_timeout, 2.0)
        )
        self.host = config.host
        self.port = config.port

    @property
    def url(self) -> str:
        """Base URL of the running router."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def router(self) -> Router:
        """The Router object inside the running app."""
        return self.app[ROUTER_KEY]

    async def start(self) -> RouterServer:
        """Set up the app (opens sessions, probes static instances) and bind."""
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.config.host, self.config.port, backlog=2048, reuse_address=True)
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = site.port  # the bound port, also when 0 was asked for
        return self

    async def close(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish within the shutdown timeout,
        cancel what is left (closing its upstream connections), close the pools. Idempotent.

        A stream cut at the end of the grace period gets a final ``router_shutting_down``
        error event first: aiohttp's own timeout would close the socket under it.
        """
        for site in list(self._runner.sites):
            await site.stop()  # new connections are refused from here on
        server = self._runner.server
        if server is not None:
            server.pre_shutdown()  # keep-alive connections take no new request
        active = self.app[ACTIVE_KEY]
        if active:
            _, pending = await asyncio.wait(set(active), timeout=self.shutdown_timeout)
            if pending:
                log.warning("grace period over: cutting %d request(s) still running", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=2.0)
        await self._runner.cleanup()

    async def __aenter__(self) -> RouterServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_forever(config: RouterConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run a RouterServer until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM)."""
    stop = stop or asyncio.Event()
    async with RouterServer(config) as server:
        log.info("fdrouter listening on %s (%s mode)", server.url, "splitwise" if config.splitwise else "mixed")
        _warn_if_exposed(config)
        print(f"fdrouter listening on {server.url}", flush=True)
        await stop.wait()
        in_flight = server.router.in_flight()
        log.info("shutting down: %d request(s) in flight get up to %gs to finish",
                 in_flight, config.shutdown_grace_period_secs)
    log.info("fdrouter stopped")


def _warn_if_exposed(config: RouterConfig) -> None:
    """Warn once when bound beyond loopback without keys: anyone could register an instance."""
    try:
        loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = config.host == "localhost"
    if loopback:
        return
    missing = [flag for flag, key in (("--admin-api-key", config.admin_api_key), ("--api-key", config.api_key))
               if not key]
    if missing:
        log.warning(
            "listening on %s without %s: anyone who can reach this port can %s",
            config.host, " and ".join(missing),
            "register instances and hijack traffic" if not config.admin_api_key else "send inference requests",
        )


__all__ = ["CONFIG_KEY", "ROUTER_KEY", "RouterServer", "build_app", "serve_forever"]
