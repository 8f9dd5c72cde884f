"""The router: picks instances with the policies and runs the upstream legs of a request.

request in (server.py) -> Router.generate -> policy.choose -> UpstreamClient.post -> ClientSink.relay
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from . import jsonutil
from .config import RouterConfig
from .errors import BadRequest, InstanceUnhealthy, NoHealthyInstance, NotFound, RouterError, UpstreamStatus
from .health import Health
from .instances import InstanceInfo, Role
from .monitor import HealthMonitor
from .pd import pd_request
from .policies import RoutingFacts, make_policy
from .registry import InstanceState, Registry
from .relay import ClientSink
from .upstream import UpstreamClient
from .validate import estimate_tokens, prompt_text

log = logging.getLogger("fdrouter.router")


class Router:
    """Registry, policies, upstream sessions and health monitor for one router process.

    An async context manager: sessions are opened and static instances probed on enter,
    everything is closed on exit, in reverse order, even if start-up failed half-way.
    """

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.registry = Registry(
            failure_threshold=config.health_failure_threshold,
            success_threshold=config.health_success_threshold,
        )
        self.upstream = UpstreamClient(config)
        self.monitor = HealthMonitor(self.registry, self.upstream, interval=config.health_check_interval_secs)
        if config.splitwise:
            self.policies = {Role.PREFILL: make_policy(config.prefill_policy),
                             Role.DECODE: make_policy(config.decode_policy)}
        else:
            self.policies = {Role.MIXED: make_policy(config.policy)}
        needs = frozenset().union(*(p.needs for p in self.policies.values()))
        self._needs_text = bool(needs & {"prompt_text", "prompt_tokens"})
        self._background: set[asyncio.Task] = set()
        self._stack: AsyncExitStack | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.upstream)
            stack.push_async_callback(self._cancel_background)
            await self._add_static_instances()
            self.monitor.start()
            stack.push_async_callback(self.monitor.stop)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def _add_static_instances(self) -> None:
        infos = self.config.instances
        results = await asyncio.gather(*(self.upstream.probe(i.url) for i in infos))
        for info, ok in zip(infos, results, strict=True):
            self.registry.add(info, health=Health.HEALTHY if ok else Health.UNHEALTHY)
            if not ok:
                log.warning("static instance %s is not healthy yet; it gets traffic once it recovers", info.url)

    async def _cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- registration ------------------------------------------------------------------

    def _modes_role_check(self, info: InstanceInfo) -> None:
        if self.config.splitwise and info.role is Role.MIXED:
            raise BadRequest("field 'role': a mixed instance cannot register with a router in splitwise mode")
        if not self.config.splitwise and info.role is not Role.MIXED:
            raise BadRequest(
                f"field 'role': a {info.role.value} instance cannot register with a router in mixed mode "
                "(start the router with --splitwise)"
            )

    async def register(self, body: Any) -> InstanceState:
        """Validate, health-probe and add an instance; registering twice keeps one entry."""
        info = InstanceInfo.from_dict(body)
        self._modes_role_check(info)
        if not await self.upstream.probe(info.url):
            raise InstanceUnhealthy(
                f"instance {info.url} did not answer {self.config.health_check_endpoint} with 2xx "
                f"within {self.config.health_check_timeout_secs:g}s; not registered"
            )
        state, created = self.registry.add(info)
        if created:
            log.info("registered %s instance %s", info.role.value, info.url)
        else:
            self.registry.observe(state, True)
        return state

    def deregister(self, body: Any) -> InstanceState:
        """Remove an instance named by a /register body or by host_ip + port."""
        if not isinstance(body, dict):
            raise BadRequest("deregistration body must be a JSON object with 'host_ip' and 'port'")
        probe = dict(body)
        probe.setdefault("role", "mixed")  # only host and port identify an instance
        info = InstanceInfo.from_dict(probe)
        state = self.registry.remove(info.key)
        if state is None:
            raise NotFound(f"no instance registered at {info.url}")
        log.info("deregistered %s instance %s", state.role.value, state.url)
        return state

    # -- generation --------------------------------------------------------------------

    def _facts(self, body: dict) -> RoutingFacts:
        if not self._needs_text:
            return RoutingFacts()
        text = prompt_text(body)
        return RoutingFacts(prompt_tokens=estimate_tokens(text), prompt_text=text)

    def _select(self, role: Role, facts: RoutingFacts) -> InstanceState:
        candidates = self.registry.routable(role)
        if not candidates:
            registered = self.registry.counts()[role.value]
            raise NoHealthyInstance(f"no healthy {role.value} instance available ({registered} registered)")
        return self.policies[role].choose(candidates, facts)

    async def generate(self, endpoint: str, raw: bytes, body: dict, sink: ClientSink) -> web.StreamResponse:
        """Route one validated chat/completions request and relay the answer to ``sink``."""
        facts = self._facts(body)
        if self.config.splitwise:
            return await self._generate_pd(endpoint, body, facts, sink)
        instance = self._select(Role.MIXED, facts)
        _acquire(instance, facts)
        try:
            # mixed mode forwards the client's bytes unchanged: no re-encoding
            return await self._relay_leg(instance, endpoint, raw, sink, leg="mixed")
        finally:
            _release(instance, facts)

    async def _relay_leg(
        self, instance: InstanceState, endpoint: str, payload: bytes, sink: ClientSink, *, leg: str
    ) -> web.StreamResponse:
        info = instance.info
        async with self.upstream.post(info.host_ip, info.port, endpoint, payload, leg=leg) as resp:
            if resp.status >= 300:
                raise await _status_error(resp, instance, leg)
            return await sink.relay(resp)

    async def _prefill_leg(self, instance: InstanceState, endpoint: str, payload: bytes) -> None:
        info = instance.info
        async with self.upstream.post(info.host_ip, info.port, endpoint, payload, leg="prefill") as resp:
            if resp.status >= 300:
                raise await _status_error(resp, instance, "prefill")
            await resp.read()  # prefill's own answer is not the client's: drain so the connection is reusable

    async def _generate_pd(
        self, endpoint: str, body: dict, facts: RoutingFacts, sink: ClientSink
    ) -> web.StreamResponse:
        prefill = self._select(Role.PREFILL, facts)
        decode = self._select(Role.DECODE, facts)
        payload = jsonutil.dumps(pd_request(body, prefill.info, decode.info))
        _acquire(prefill, facts)
        _acquire(decode, facts)
        result: web.StreamResponse | None = None
        try:
            # The two legs are one unit: the TaskGroup cancels the other leg (closing its
            # connection) as soon as one fails, so decode never waits for a KV cache that a
            # failed prefill will not send (SGLang #9726; FastDeploy's gather had the bug).
            async with asyncio.TaskGroup() as group:
                group.create_task(self._prefill_leg(prefill, endpoint, payload))
                result = await self._relay_leg(decode, endpoint, payload, sink, leg="decode")
        except BaseExceptionGroup as eg:
            error = _first_router_error(eg)
            if error is None:
                raise
            if sink.finished and result is not None:
                log.warning("prefill leg failed after decode finished: %s", error.message)
                return result
            raise error from None
        finally:
            _release(prefill, facts)
            _release(decode, facts)
        assert result is not None
        return result

    # -- control -----------------------------------------------------------------------

    def abort(self, body: Any) -> int:
        """Forward an abort to every instance in the background; returns how many were asked."""
        if not isinstance(body, dict):
            raise BadRequest("abort body must be a JSON object with 'req_ids' or 'abort_all'")
        req_ids = body.get("req_ids")
        abort_all = body.get("abort_all", False)
        if not isinstance(abort_all, bool):
            raise BadRequest("field 'abort_all' must be true or false")
        if req_ids is not None and (not isinstance(req_ids, list) or not all(isinstance(r, str) for r in req_ids)):
            raise BadRequest("field 'req_ids' must be a list of strings")
        if not abort_all and not req_ids:
            raise BadRequest("give 'req_ids' (a non-empty list) or 'abort_all': true")
        targets = self.registry.all()
        for state in targets:
            self._spawn(self._abort_one(state, body))
        return len(targets)

    async def _abort_one(self, state: InstanceState, body: dict) -> None:
        try:
            status, _, _ = await self.upstream.control_request("POST", state.url + "/v1/abort_requests", json=body)
            if status >= 300:
                log.warning("abort on %s answered HTTP %s", state.url, status)
        except RouterError as exc:
            log.warning("abort on %s failed: %s", state.url, exc.message)

    def needed_roles(self) -> tuple[Role, ...]:
        """Roles that must have a healthy instance for the router to serve."""
        return (Role.PREFILL, Role.DECODE) if self.config.splitwise else (Role.MIXED,)

    async def check_instances(self) -> dict[str, int]:
        """Probe every instance now; healthy count per needed role."""
        await self.monitor.run_round()
        return {role.value: len(self.registry.routable(role)) for role in self.needed_roles()}

    async def models(self) -> tuple[int, bytes, str]:
        """``GET /v1/models`` from a healthy instance that serves generation."""
        role = Role.DECODE if self.config.splitwise else Role.MIXED
        candidates = self.registry.routable(role)
        if not candidates:
            raise NoHealthyInstance(f"no healthy {role.value} instance to list models from")
        return await self.upstream.control_request("GET", candidates[0].url + "/v1/models")

    def in_flight(self) -> int:
        """Requests in flight across every registered instance."""
        return sum(s.in_flight for s in self.registry.all())


def _acquire(instance: InstanceState, facts: RoutingFacts) -> None:
    instance.in_flight += 1
    instance.in_flight_tokens += facts.prompt_tokens
    instance.requests_total += 1


def _release(instance: InstanceState, facts: RoutingFacts) -> None:
    instance.in_flight -= 1
    instance.in_flight_tokens -= facts.prompt_tokens


async def _status_error(resp: Any, instance: InstanceState, leg: str) -> UpstreamStatus:
    body = await resp.read()
    return UpstreamStatus(
        resp.status, body, resp.header("content-type", "application/json"), instance=instance.url, leg=leg
    )


def _first_router_error(group: BaseExceptionGroup) -> RouterError | None:
    for exc in group.exceptions:
        if isinstance(exc, RouterError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_router_error(exc)
            if found is not None:
                return found
    return None
