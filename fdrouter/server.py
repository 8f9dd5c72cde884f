"""The HTTP face of the router: the aiohttp application, its routes, and RouterServer (bind, serve, drain).

Handlers live in ``handlers.py``, error rendering in ``responses.py``, slow-client protection
in ``client_guard.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import handlers
from .admission import AdmissionControl
from .app_state import ACTIVE_KEY, ADMISSION_KEY, CONFIG_KEY, GENERATION_KEY, ROUTER_KEY, WORKER_KEY
from .client_guard import ClientLimits, GuardedSite
from .config import RouterConfig
from .front import LeanFront
from .generation_service import GenerationService
from .responses import error_middleware
from .router import Router
from .router_metrics import RouterMetrics
from .validate import CHAT, COMPLETIONS
from .workers.shared_admission import SharedAdmission
from .workers.shared_state import SharedState

log = logging.getLogger(__name__)


def build_app(config: RouterConfig, *, shared: SharedState | None = None) -> web.Application:
    """The aiohttp application; the Router lives in its lifecycle (cleanup_ctx).

    ``shared``: the app is one worker of a multi-worker router (``workers/supervisor.py``).
    """
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG_KEY] = config

    app[ACTIVE_KEY] = set()
    if shared is None:
        app[ADMISSION_KEY] = AdmissionControl(
            max_concurrent=config.max_concurrent_requests,
            queue_size=config.queue_size,
            queue_timeout_secs=config.queue_timeout_secs,
        )
    else:
        assert shared.worker is not None
        app[ADMISSION_KEY] = SharedAdmission(
            config.max_concurrent_requests, shm=shared.shm, worker=shared.worker, queue_size=config.queue_size,
            queue_timeout_secs=config.queue_timeout_secs)
        app[WORKER_KEY] = shared.worker

    async def router_ctx(app: web.Application) -> AsyncIterator[None]:
        admission = app[ADMISSION_KEY]
        metrics = RouterMetrics(admission=lambda: (admission.active, admission.queued))
        async with Router(config, metrics=metrics, shared=shared) as router:
            app[ROUTER_KEY] = router
            app[GENERATION_KEY] = GenerationService(router, config, admission, app[ACTIVE_KEY])
            yield

    app.cleanup_ctx.append(router_ctx)
    app.router.add_post(CHAT, handlers.generation)
    app.router.add_post(COMPLETIONS, handlers.generation)
    app.router.add_post("/register", handlers.register)
    app.router.add_post("/deregister", handlers.deregister)
    app.router.add_post("/v1/abort_requests", handlers.abort_requests)
    app.router.add_get("/registered", handlers.registered)
    app.router.add_get("/registered_number", handlers.registered_number)
    app.router.add_get("/decode_instances", handlers.decode_instances)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/health_generate", handlers.health_generate)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/metrics", handlers.metrics)
    return app


class RouterServer:
    """A running router: binds, serves in the background of the current loop, stops on exit.

    ``async with RouterServer(config) as server:`` works in tests, notebooks and model
    servers alike; ``server.url`` is where it listens (port 0 picks a free port).
    """

    def __init__(self, config: RouterConfig, *, shutdown_timeout: float | None = None,
                 shared: SharedState | None = None) -> None:
        """``shutdown_timeout`` (default: the config's grace period) is how long close() lets
        in-flight requests finish before cancelling them. ``shared``: one worker of a
        multi-worker router, bound with SO_REUSEPORT to the port its supervisor reserved."""
        self.config = config
        self.shared = shared
        self.app = build_app(config, shared=shared)
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
        self.limits = ClientLimits(
            header_timeout=config.client_header_timeout_secs,
            body_timeout=config.client_body_timeout_secs,
            keepalive_timeout=config.client_keepalive_timeout_secs,
        )

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
            front = None
            if self.config.http_front.lower() == "lean":
                assert self._runner.server is not None
                front = LeanFront(self.app[GENERATION_KEY], self.limits, self._runner.server)
            site = GuardedSite(self._runner, self.config.host, self.config.port, limits=self.limits, front=front,
                               backlog=2048, reuse_address=True, reuse_port=self.shared is not None)
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


__all__ = ["ADMISSION_KEY", "CONFIG_KEY", "ROUTER_KEY", "RouterServer", "build_app", "serve_forever"]
