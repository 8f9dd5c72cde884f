"""The router: picks instances with the policies and runs the upstream legs of a request.

request in (server.py) -> Router.generate -> policy.choose -> UpstreamClient.post -> ClientSink.relay
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from . import jsonutil
from .breaker import CircuitBreaker, Transition
from .config import RouterConfig
from .errors import (
    BadRequest,
    InstanceUnhealthy,
    NoHealthyInstance,
    NotFound,
    RouterError,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from .generation_pool import Response
from .health_monitor import HealthMonitor
from .health_state import Health
from .instances import InstanceInfo, Role
from .kv_events.subscriber import KvEventSubscriber, feeds_for
from .legs import Leg
from .metrics_scraper import MetricsScraper
from .pd import pd_request
from .pd_relay import relay_attempt
from .pd_reschedule import Reschedule
from .policies import RoutingFacts, make_policy
from .registry import InstanceState, Registry
from .router_control import RouterControl
from .router_metrics import InstanceRow, RouterMetrics
from .sink import Sink
from .stats import CacheStats, StatsLog, UsageTap
from .upstream import UpstreamClient
from .validate import estimate_tokens, prompt_text
from .workers.fleet_link import FleetLink
from .workers.shared_state import SharedState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Router(RouterControl):
    """Registry, policies, upstream sessions and health monitor for one router process.

    An async context manager: sessions are opened and static instances probed on enter,
    everything is closed on exit, in reverse order, even if start-up failed half-way.
    """

    def __init__(self, config: RouterConfig, *, metrics: RouterMetrics | None = None,
                 shared: SharedState | None = None) -> None:
        """``shared``: this router is one worker of a multi-worker router (``workers/fleet_link.py``)."""
        self.config = config
        self.metrics = metrics or RouterMetrics()
        self.registry = Registry(
            failure_threshold=config.health_failure_threshold,
            success_threshold=config.health_success_threshold,
            breaker_factory=_breaker_factory(config),
            max_instances=config.max_instances,
        )
        self.upstream = UpstreamClient(config)
        self.monitor = HealthMonitor(self.registry, self.upstream, interval=config.health_check_interval_secs)
        roles = (Role.PREFILL, Role.DECODE) if config.splitwise else (Role.MIXED,)
        self.policies = {
            role: make_policy(name, **config.options_for(name))
            for role, name in zip(roles, config.policy_names, strict=True)
        }
        needs = frozenset().union(*(p.needs for p in self.policies.values()))
        self._needs_text = bool(needs & {"prompt_text", "prompt_tokens"})
        self._session_headers = tuple(
            dict.fromkeys(p.session_header for p in self.policies.values() if "session_key" in p.needs)
        )
        self.scraper = (
            MetricsScraper(self.registry, self.upstream, interval=config.metrics_scrape_interval_secs)
            if "remote_metrics" in needs else None
        )
        self.stats = CacheStats() if config.stats_interval_secs > 0 else None
        self.stats_log = None if self.stats is None else StatsLog(
            self.stats, lambda: [(s.url, s.in_flight) for s in self.registry.all()], interval=config.stats_interval_secs)
        feeds = feeds_for(self.policies)
        self.kv_subscriber = KvEventSubscriber(
            self.registry, self.upstream, feeds, path=config.kv_events_path,
            idle_timeout=config.kv_events_idle_timeout_secs, connect_timeout=config.connect_timeout_secs,
            retry_secs=config.kv_events_retry_secs) if feeds else None
        self._max_retries = 0 if config.disable_retries else config.retry_max_retries
        self._backoff_initial = config.retry_initial_backoff_secs
        self._backoff_max = config.retry_max_backoff_secs
        self._rng = random.Random()  # retry jitter only; policies own their randomness
        self._background: set[asyncio.Task] = set()
        self._probing: set[str] = set()  # instances with a confirming health probe under way
        self._stack: AsyncExitStack | None = None
        self.metrics.bind(instances=self._metric_rows)
        self._link = FleetLink(self, shared) if shared is not None else None
        self._sharing = tuple(role for role, p in self.policies.items() if p.learns) if shared is not None else ()

    def _metric_rows(self) -> list[InstanceRow]:
        now = asyncio.get_running_loop().time()
        return [
            InstanceRow(s.url, s.role.value, s.in_flight, s.in_flight_tokens, s.health.state.routable,
                        s.breaker.state_at(now).code)
            for s in self.registry.all()
        ]

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.upstream)
            stack.push_async_callback(self._cancel_background)
            if self._link is not None:  # a worker: the supervisor probes, scrapes and adds static instances
                await stack.enter_async_context(self._link)
            else:
                await self._add_static_instances()
                self.monitor.start()
                stack.push_async_callback(self.monitor.stop)
                if self.scraper is not None:
                    self.scraper.start()
                    stack.push_async_callback(self.scraper.stop)
            if self.stats_log is not None:
                self.stats_log.start()
                stack.push_async_callback(self.stats_log.stop)
            if self.kv_subscriber is not None:  # every worker follows the instances' KV events itself
                self.kv_subscriber.start()
                stack.push_async_callback(self.kv_subscriber.stop)
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
        if self._link is not None:
            return await self._link.register(info)
        # A known healthy instance re-registering is a heartbeat (FastDeploy's engines re-post every
        # 5 s): the health monitor probes it already, so no probe and no log line, just the new info.
        heartbeat = self.registry.heartbeat(info)
        if heartbeat is not None:
            state, paused_changed = heartbeat
            if paused_changed:
                log.info("instance %s %s", info.url, "paused: no new requests" if info.is_paused else "resumed")
            return state
        if not await self.upstream.probe(info.url, lane="register"):
            raise InstanceUnhealthy(
                f"instance {info.url} did not answer {self.config.health_check_endpoint} with 2xx "
                f"within {self.config.health_check_timeout_secs:g}s; not registered"
            )
        state, created = self.registry.add(info)
        if created:
            log.info("registered %s instance %s%s", info.role.value, info.url, " (paused)" if info.is_paused else "")
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
        if self._link is not None:
            state = self._link.deregister(info.key)
        else:
            state = self.registry.remove(info.key)
            if state is not None:
                self.forget(state)
        if state is None:
            raise NotFound(f"no instance registered at {info.url}")
        log.info("deregistered %s instance %s", state.role.value, state.url)
        return state

    def forget(self, state: InstanceState) -> None:
        """Drop what the metrics and policies keep about a removed instance."""
        self.metrics.forget_instance(state.url)
        for policy in self.policies.values():
            policy.forget(state.url)

    # -- generation --------------------------------------------------------------------

    def _facts(self, body: dict, headers: Mapping[str, str]) -> RoutingFacts:
        """Only what the policies' ``needs`` ask for: round_robin gets nothing parsed."""
        facts = RoutingFacts(now=asyncio.get_running_loop().time())
        if self._needs_text:
            text = prompt_text(body)
            facts.prompt_text = text
            facts.prompt_tokens = estimate_tokens(text)
        if self._session_headers:
            for header in self._session_headers:
                value = headers.get(header)
                if value:
                    facts.session_key = value
                    break
            else:
                user = body.get("user")
                if isinstance(user, str) and user:
                    facts.session_key = user
        return facts

    def _candidates(self, role: Role, now: float, exclude: set[str]) -> list[InstanceState]:
        """Healthy instances of ``role`` whose circuit lets a request through, minus ``exclude``."""
        return [s for s in self.registry.routable(role) if s.url not in exclude and s.breaker.allows(now)]

    def _select(self, role: Role, facts: RoutingFacts, exclude: set[str]) -> InstanceState:
        candidates = self._candidates(role, facts.now, exclude)
        if not candidates:
            registered = self.registry.counts()[role.value]
            healthy = len(self.registry.routable(role))
            detail = f"{registered} registered, {healthy} healthy"
            if healthy:
                detail += ", the rest with an open circuit or already tried"
            raise NoHealthyInstance(f"no healthy {role.value} instance available ({detail})")
        choice = self.policies[role].choose(candidates, facts)
        if role in self._sharing:  # a learning policy: the other workers learn this decision too
            self._link.share(role, choice.url, facts)  # type: ignore[union-attr]
        return choice

    async def generate(
        self,
        endpoint: str,
        raw: bytes,
        body: dict,
        sink: Sink,
        *,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Route one validated chat/completions request and relay the answer to ``sink``; its status.

        An attempt that fails before any byte reached the client is retried on another
        instance (another pair in splitwise mode), with exponential backoff and full jitter.
        """
        if self._link is not None:
            self._link.poll()  # what other workers registered, the supervisor's verdicts: three word reads
        facts = self._facts(body, headers or {})
        extra = f"X-Request-Id: {request_id}\r\n".encode() if request_id else b""
        failed: set[str] = set()
        retries = 0
        resched = Reschedule.for_request(body, self.config)
        while True:
            try:
                if self.config.splitwise:
                    return await self._attempt_pd(endpoint, body, facts, sink, extra, request_id, failed, resched)
                return await self._attempt_mixed(endpoint, raw, facts, sink, extra, failed)
            except RouterError as error:
                if not self._retryable(error, sink, retries, resched):
                    raise
                assert error.instance is not None  # _retryable() retries only errors that name one
                failed.add(error.instance)
                if not all(self._candidates(role, facts.now, failed) for role in self.needed_roles()):
                    raise  # nowhere else to go: the client gets this attempt's error
                retries += 1
                delay = self._rng.uniform(0, min(self._backoff_max, self._backoff_initial * 2 ** (retries - 1)))
                log.warning("%s; retry %d of %d on another instance in %.0f ms",
                            error.message, retries, self._max_retries, delay * 1000)
                self.metrics.observe_retry(error.code)
                await asyncio.sleep(delay)
                facts.now = asyncio.get_running_loop().time()

    def _retryable(self, error: RouterError, sink: Sink, retries: int, resched: Reschedule | None) -> bool:
        """Retry only what failed before the client saw a byte of it, and only instance failures."""
        if retries >= self._max_retries or sink.finished:
            return False
        if sink.prepared and not (resched is not None and resched.resumable):
            return False
        if error.instance is None:
            return False
        if isinstance(error, UpstreamStatus):
            return error.status in _RETRY_STATUSES
        if isinstance(error, UpstreamTimeout):
            return error.code == "first_byte_timeout"  # a total or idle timeout already cost the full wait
        return isinstance(error, UpstreamError)

    async def _attempt_mixed(
        self, endpoint: str, raw: bytes, facts: RoutingFacts, sink: Sink, extra: bytes, failed: set[str]
    ) -> int:
        instance = self._select(Role.MIXED, facts, failed)
        # mixed mode forwards the client's bytes unchanged: no re-encoding
        async with self._open_leg(instance, facts) as leg:
            response = await self._relay_leg(leg, endpoint, raw, sink, "mixed", extra)
        assert response is not None  # only a PD reschedule relay answers None
        return response

    async def _attempt_pd(
        self, endpoint: str, body: dict, facts: RoutingFacts, sink: Sink, extra: bytes,
        request_id: str | None, failed: set[str], resched: Reschedule | None = None,
    ) -> int:
        relay = None if resched is None else functools.partial(relay_attempt, sink, resched)
        while True:  # one pass per attempt; more than one only when a decode instance preempts the request
            prefill = self._select(Role.PREFILL, facts, failed)
            decode = self._select_decode(facts, failed, resched)
            shaped = pd_request(body, prefill.info, decode.info, request_id)
            payload = jsonutil.dumps(shaped if resched is None else resched.shape(shaped))
            # both legs count from now, before either task runs: the next request already sees them
            prefill_leg, decode_leg = self._open_leg(prefill, facts), self._open_leg(decode, facts)
            result: int | None = None
            decode_done = False
            try:
                # The two legs are one unit: the TaskGroup cancels the other leg (closing its
                # connection) as soon as one fails, so decode never waits for a KV cache that a
                # failed prefill will not send (SGLang #9726; FastDeploy's gather had the bug).
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._prefill_leg(prefill_leg, endpoint, payload, extra))
                    async with decode_leg:
                        result = await self._relay_leg(decode_leg, endpoint, payload, sink, "decode", extra, relay)
                    decode_done = True
            except BaseExceptionGroup as eg:
                error = _first_router_error(eg)
                if error is None:
                    raise
                if decode_done:
                    log.warning("prefill leg failed after decode finished: %s", error.message)
                elif not (resched is not None and resched.is_pd_error(error)):  # a preemption as an error answer
                    raise error from None
            finally:
                prefill_leg.finish()  # a no-op unless its task was cancelled before it ever ran
                decode_leg.finish()
            if result is not None:
                return result
            assert resched is not None  # only a reschedule relay answers None
            self.metrics.observe_reschedule(decode.url)
            resched.preempted(decode.url)  # logs it; PdRescheduleExhausted past --preempt-retry-count
            facts.now = asyncio.get_running_loop().time()

    def _select_decode(self, facts: RoutingFacts, failed: set[str], resched: Reschedule | None) -> InstanceState:
        """The decode instance, avoiding those that preempted the request if asked to (and others exist)."""
        avoid = failed | resched.avoid if resched is not None and resched.avoid else None
        if avoid and self._candidates(Role.DECODE, facts.now, avoid):
            return self._select(Role.DECODE, facts, avoid)
        return self._select(Role.DECODE, facts, failed)

    def _open_leg(self, instance: InstanceState, facts: RoutingFacts) -> Leg:
        return Leg(instance, facts.prompt_tokens, asyncio.get_running_loop().time(),
                   on_transition=self._log_circuit, on_error=self._count_error, on_suspect=self._confirm_health)

    def _count_error(self, instance: InstanceState, error: RouterError) -> None:
        self.metrics.observe_upstream_error(instance.url, error.code)

    def _confirm_health(self, instance: InstanceState) -> None:
        """An instance answered 5xx other than 502/503/504: probe it now, in the background, once at a time."""
        if self._link is not None:
            self._link.request_probe(instance.url)  # the supervisor owns the verdicts
        elif instance.url not in self._probing:
            self._probing.add(instance.url)
            self._spawn(self._probe_now(instance))

    async def _probe_now(self, instance: InstanceState) -> None:
        try:
            await self.monitor.check(instance)
        finally:
            self._probing.discard(instance.url)

    @staticmethod
    def _log_circuit(instance: InstanceState, transition: Transition | None) -> None:
        if transition is not None:
            level = logging.WARNING if transition.new.value == "open" else logging.INFO
            log.log(level, "instance %s circuit %s -> %s", instance.url, transition.old.value, transition.new.value)

    async def _relay_leg(
        self, leg: Leg, endpoint: str, payload: bytes, sink: Sink, role: str, extra: bytes,
        relay: Callable[[Response], Awaitable[int | None]] | None = None,
    ) -> int | None:
        instance = leg.instance
        info = instance.info
        sink.instance = instance.url
        async with self.upstream.post(info.host_ip, info.port, endpoint, payload, leg=role, headers=extra) as resp:
            if resp.status >= 300:
                raise await _status_error(resp, instance, role)
            leg.answered()  # 2xx headers: the instance works (a half-open trial succeeds here)
            # the instance's load ends with its answer, not when a slow client has read it all
            resp.on_done = leg.finish
            answer: Any = resp if self.stats is None else UsageTap(resp, self.stats)
            return await (sink.relay if relay is None else relay)(answer)

    async def _prefill_leg(self, leg: Leg, endpoint: str, payload: bytes, extra: bytes) -> None:
        instance = leg.instance
        info = instance.info
        async with leg, self.upstream.post(
            info.host_ip, info.port, endpoint, payload, leg="prefill", headers=extra
        ) as resp:
            if resp.status >= 300:
                raise await _status_error(resp, instance, "prefill")
            leg.answered()
            async for _ in resp.iter_chunks():  # prefill's own answer is not the client's: drain, keep nothing
                pass

    def in_flight(self) -> int:
        """Requests in flight across every registered instance."""
        return sum(s.in_flight for s in self.registry.all())


def _breaker_factory(config: RouterConfig) -> Callable[[], CircuitBreaker]:
    if config.breaker_failure_threshold == 0:
        return CircuitBreaker.disabled
    return functools.partial(
        CircuitBreaker,
        failure_threshold=config.breaker_failure_threshold,
        success_threshold=config.breaker_success_threshold,
        cooldown_secs=config.breaker_cooldown_secs,
    )


_ERROR_BODY_LIMIT = 1024 * 1024  # an instance's error body passed on to the client, at most

# An instance answering these is overloaded or restarting: another one may well succeed.
_RETRY_STATUSES = frozenset({502, 503})


async def _status_error(resp: Any, instance: InstanceState, leg: str) -> UpstreamStatus:
    body = b""
    async for chunk in resp.iter_chunks():  # an error answer is small; keep at most _ERROR_BODY_LIMIT of it
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            body = body[:_ERROR_BODY_LIMIT]
            break
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


__all__ = ["Router"]
