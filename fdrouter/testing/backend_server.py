"""A mock OpenAI-compatible LLM instance: a real aiohttp server standing in for FastDeploy/vLLM.

Tests, notebooks and benchmarks put it behind the router. It speaks just enough of the OpenAI
and FastDeploy HTTP surface (generation, /health, /v1/models, /metrics, /v1/abort_requests),
plays a PD role (prefill answers one token), can be told to misbehave at runtime through
`MockBehavior`, and counts what really happened on the wire: TCP connections, requests,
client disconnects.

Like a real engine it keeps a prefix KV cache (`fdrouter.sim.kvcache.PrefixCache`) and reports the
prompt tokens it found there as ``usage.prompt_tokens_details.cached_tokens``, OpenAI's field,
so cache-aware routing can be measured end to end. With ``MockBehavior.engine`` set it also
*times* like one (`fdrouter.sim.engine_model.EngineModel`): continuous batching, decided by the
simulator's own planner (`fdrouter.sim.batching`) and applied in real time by
`fdrouter.testing.scheduler`. So a live run on mocks and a simulation of it agree.

It is also the backend of the throughput benchmarks, so the default path (no engine model)
does little: no routing table, no middleware, no access log, no scheduler task, chunk text
built from string templates (`fdrouter.testing.openai_shapes`); the cache costs a few dict
operations per request.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import count
from typing import Any

from aiohttp import web

from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import PrefixCache

from . import openai_shapes as shapes
from .behavior import MockBehavior
from .connection_counting import CountingServer
from .kv_publisher import KvPublisher
from .scheduler import DEFAULT_ENGINE, EngineScheduler, EngineSequence
from .streaming import write_stream

__all__ = ["RECEIVED_MAXLEN", "ROLES", "SHUTDOWN_TIMEOUT", "MockBackend"]

ROLES = ("mixed", "prefill", "decode")

# Enough history for any test to inspect, small enough that a long benchmark stays flat in memory.
RECEIVED_MAXLEN = 1000

# close() gives in-flight handlers this long per phase (aiohttp waits, then cancels, then waits
# again) before cutting connections; aiohttp's own default of 60 s is for real servers.
SHUTDOWN_TIMEOUT = 0.5

_JSON = "application/json"
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OK = b'{"status": "ok"}'

# Same gauge names as FastDeploy's metrics endpoint, so metric-driven policies scrape the mock unchanged.
_METRICS_TEMPLATE = (
    "# HELP fastdeploy:num_requests_running Number of requests currently running.\n"
    "# TYPE fastdeploy:num_requests_running gauge\n"
    "fastdeploy:num_requests_running {running}\n"
    "# HELP fastdeploy:num_requests_waiting Number of requests waiting to be scheduled.\n"
    "# TYPE fastdeploy:num_requests_waiting gauge\n"
    "fastdeploy:num_requests_waiting {waiting}\n"
)


def _error_response(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=shapes.error_body(status, message), content_type=_JSON)


class MockBackend:
    """A mock OpenAI-compatible LLM server on loopback, with PD roles, faults and wire-level accounting.

    Use as ``async with MockBackend(role="decode") as backend: ...`` or ``await MockBackend().start()``
    then ``await backend.close()``. Port 0 binds a free port; ``url`` is known after start().
    Counters are plain attributes, always current, and never reset by the server itself.

    Prefix cache: ``prefix_cache`` holds the blocks of the prompts this instance prefilled, sized by
    ``behavior.engine`` (or `EngineModel`'s defaults). The prompt is the router's
    ``prompt_text`` (chat contents joined with "\\n"), 4 characters a token; completions given as
    token ids are hashed by id. ``prompt_tokens_total`` and ``cached_tokens_total`` add up what
    the cache saw, so their ratio is the token hit rate. PD: the prefill instance looks up and
    fills its cache; a decode instance receives the KV cache computed, so it neither looks up
    nor counts, and its answers report ``cached_tokens`` 0.

    Engine model (``behavior.engine`` set): continuous batching as `fdrouter.sim.batching` decides
    it, run by `fdrouter.testing.scheduler`. At most ``max_batch`` requests run, the rest wait
    FIFO; ``/metrics`` reports both gauges. A streaming answer sends its headers at once and each
    token chunk when the engine produces it (time to first token = queueing + prefill); a
    non-streaming one answers after the last token. A client that leaves frees its batch slot at once.
    """

    def __init__(
        self,
        *,
        role: str = "mixed",
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "mock-model",
        behavior: MockBehavior | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.role = role
        self.host = host
        self.port = port
        self.model = model
        self.behavior = behavior if behavior is not None else MockBehavior()

        self.connections_open = 0
        self.requests_in_flight = 0
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECEIVED_MAXLEN)
        self.received_headers: collections.deque[Mapping[str, str]] = collections.deque(
            maxlen=RECEIVED_MAXLEN
        )
        """The headers of the requests in `received` (case-insensitive mappings), same order."""
        self.aborts: list[Any] = []
        engine = self.behavior.engine or DEFAULT_ENGINE
        self.prefix_cache = PrefixCache(engine.cache_blocks, engine.block_tokens)
        """Replaced when a new engine model changes the block size; ``clear()`` it for a cold start."""
        self.kv_events = KvPublisher(self.prefix_cache)
        """Publishes the prefix cache's changes at ``GET /kv_events`` (docs/kv_events.md)."""
        self.reset_stats()  # the cumulative counters start at zero
        self._scheduler = EngineScheduler(self._admitted)

        self._model_json = json.dumps(model)
        self._models_body = json.dumps(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "mock"}]}
        ).encode()
        self._ids = count()
        self._server: CountingServer | None = None
        self._runner: web.ServerRunner | None = None
        self._started = False
        self._closing = False
        self._stopping: asyncio.Event | None = None
        # Every running handler task, so close() can cancel hung ones instead of waiting them out.
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        # Path -> (method, handler); a dict lookup is all the routing the hot path needs.
        self._routes: dict[str, tuple[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]]] = {
            "/v1/chat/completions": ("POST", self._chat_completions),
            "/v1/completions": ("POST", self._completions),
            "/health": ("GET", self._health),
            "/v1/models": ("GET", self._models),
            "/metrics": ("GET", self._metrics),
            "/v1/abort_requests": ("POST", self._abort_requests),
            "/kv_events": ("GET", self.kv_events.handle),
        }

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8001``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<MockBackend {self.url} role={self.role}>"

    @property
    def serving(self) -> bool:
        """Between ``start()`` and ``close()``."""
        return self._runner is not None

    @property
    def requests_waiting(self) -> int:
        """Generation requests queued for a batch slot (always 0 without an engine model)."""
        return len(self._scheduler.waiting)

    @property
    def requests_running(self) -> int:
        """Generation requests in flight and not waiting: the batch, plus any being read or answered."""
        return self.requests_in_flight - len(self._scheduler.waiting)

    async def start(self) -> MockBackend:
        """Bind and start serving; port 0 picks a free port. Returns self."""
        if self._started:
            raise RuntimeError("a MockBackend can only be started once")
        self._started = True
        self._stopping = asyncio.Event()
        # handler_cancellation: a client that goes away cancels its handler, which is how real
        # disconnects reach `disconnects` and how hung handlers end.
        self._server = CountingServer(
            self._dispatch, counts=self, handler_cancellation=True, access_log=None
        )
        runner = web.ServerRunner(self._server, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = site.port
        return self

    async def close(self) -> None:
        """Stop serving and drop every connection. Idempotent, and prompt even while handlers hang."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        assert self._stopping is not None and self._server is not None
        self._stopping.set()
        for task in list(self._handler_tasks):
            task.cancel()
        self._scheduler.cancel()
        await runner.cleanup()
        # A client that stopped reading keeps a transport open after a graceful close; cut it so the
        # connection counters settle.
        for transport in list(self._server.open_transports.values()):
            transport.abort()
        await self.wait_for(lambda b: b.connections_open == 0, timeout=SHUTDOWN_TIMEOUT)

    async def __aenter__(self) -> MockBackend:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_for(self, predicate: Callable[[MockBackend], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` every 10 ms until it is true (True) or `timeout` seconds pass (False).

        The default timeout is generous on purpose: it only costs time when the predicate never
        comes true, and a loaded 2-core machine can take a second for what usually takes a millisecond.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def register_info(self, **overrides: Any) -> dict[str, Any]:
        """A FastDeploy ``POST /register`` body describing this instance; `overrides` replace fields.

        The side-channel ports are made up (nothing listens on them) but differ per instance.
        """
        info: dict[str, Any] = {
            "role": self.role,
            "host_ip": self.host,
            "port": self.port,
            "metrics_port": self.port,
            "connector_port": self.port + 1,
            "engine_worker_queue_port": self.port + 2,
            "transfer_protocol": ["ipc", "rdma"],
            "rdma_ports": [self.port + 3],
            "device_ids": [0],
            "tp_size": 1,
        }
        info.update(overrides)
        return info

    def reset_stats(self) -> None:
        """Zero the cumulative counters and histories. Gauges of what is open now, and the contents
        of the prefix cache, are left alone (``prefix_cache.clear()`` empties it)."""
        self.connections_accepted = 0
        self.requests_total = 0
        self.disconnects = 0
        self.health_checks = 0
        self.metrics_requests = 0
        """GET /metrics answered: how often something scraped this instance."""
        self.prompt_tokens_total = 0
        """Prompt tokens this instance prefilled (looked up in its prefix cache)."""
        self.cached_tokens_total = 0
        """Of those, the tokens found in the prefix cache."""
        self.prefix_cache.hits = self.prefix_cache.lookups = 0
        self.received.clear()
        self.received_headers.clear()
        self.aborts.clear()

    # -- prefix cache ----------------------------------------------------------------------------

    def _cache_for(self, engine: EngineModel) -> PrefixCache:
        """The prefix cache, resized (or rebuilt, for a new block size) to what `engine` says."""
        cache = self.prefix_cache
        if cache.block_tokens != engine.block_tokens:
            cache = self.prefix_cache = PrefixCache(engine.cache_blocks, engine.block_tokens)
            self.kv_events.attach(cache)
        elif cache.capacity_blocks != engine.cache_blocks:
            cache.capacity_blocks = engine.cache_blocks  # a smaller capacity evicts on the next insert
        return cache

    def _lookup(self, prompt_tokens: int, hashes: Sequence[int]) -> int:
        """An engine's admission: count the cached prefix, cache the whole prompt; cached tokens."""
        cached = self.prefix_cache.lookup_and_insert(hashes)
        self.prompt_tokens_total += prompt_tokens
        self.cached_tokens_total += cached
        return cached

    def _admitted(self, prefilling: list[EngineSequence]) -> None:
        """The engine admitted these and looked up their prompts: count what the cache saw."""
        for seq in prefilling:
            self.prompt_tokens_total += seq.prompt_tokens
            self.cached_tokens_total += seq.cached_tokens

    # -- HTTP handlers -------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(request.path)
        if route is None:
            return _error_response(404, f"no route for {request.path}")
        method, handler = route
        if request.method != method:
            return _error_response(405, f"{request.path} accepts {method} only")
        task = asyncio.current_task()
        if task is None:  # not reachable under aiohttp, which runs each handler in its own task
            return await handler(request)
        self._handler_tasks.add(task)
        try:
            return await handler(request)
        finally:
            self._handler_tasks.discard(task)

    async def _chat_completions(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._generation(request, chat=True)

    async def _completions(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._generation(request, chat=False)

    async def _generation(self, request: web.BaseRequest, chat: bool) -> web.StreamResponse:
        self.requests_total += 1
        self.requests_in_flight += 1
        try:
            return await self._generate(request, chat)
        except asyncio.CancelledError:
            # handler_cancellation: the client went away (unless we are the ones closing).
            if not self._closing:
                self.disconnects += 1
            raise
        except ConnectionError:
            # The client vanished while we read its body; nobody will see this answer.
            if not self._closing:
                self.disconnects += 1
            return web.Response(status=400)
        finally:
            self.requests_in_flight -= 1

    async def _generate(self, request: web.BaseRequest, chat: bool) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            return _error_response(400, f"malformed JSON body: {exc}")
        if not isinstance(body, dict):
            return _error_response(400, "request body must be a JSON object")
        self.received.append(body)
        self.received_headers.append(request.headers)

        behavior = self.behavior
        if behavior.gate is not None:
            await behavior.gate.wait()  # ends when the test opens it, by cancellation, or close()
        if behavior.hang_before_headers:
            assert self._stopping is not None
            await self._stopping.wait()  # ends by cancellation (client gone) or close()
            return _error_response(503, "mock backend is shutting down")
        if behavior.fail_status is not None:
            return _error_response(
                behavior.fail_status, f"mock backend failure (status {behavior.fail_status})"
            )

        # a prefill instance computes the KV cache and emits the first token only
        n = 1 if self.role == "prefill" else shapes.completion_tokens(body, behavior.output_tokens)
        start, n, finish_reason = self._preemption(body, n, behavior)
        engine = behavior.engine
        prefill = self.role != "decode"  # a decode instance gets the KV cache computed: no lookup
        cache = self._cache_for(engine or DEFAULT_ENGINE)
        prompt_tokens, hashes = shapes.prompt_blocks(body, chat, cache.block_tokens if prefill else None)
        prompt_ids = None
        if shapes.wants_token_ids(body):  # FastDeploy's return_token_ids; made-up ids for a text prompt
            prompt_ids = (None if chat else shapes.token_ids(body.get("prompt"))) or list(range(prompt_tokens))
        request_id = body.get("request_id")
        prefix = "chatcmpl-" if chat else "cmpl-"
        # Echo the router's request_id the way FastDeploy does, so tests can correlate the legs.
        response_id = prefix + (request_id if isinstance(request_id, str) else f"mock{next(self._ids)}")

        seq: EngineSequence | None = None
        cached = 0
        if engine is None:
            if prefill:
                cached = self._lookup(prompt_tokens, hashes)
        else:
            seq = EngineSequence(n, prompt_tokens, hashes)
            self._scheduler.submit(seq, engine, cache if prefill else None)
        try:
            if body.get("stream") is True:
                options = body.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                return await self._stream(
                    request,
                    chat,
                    response_id,
                    n,
                    prompt_tokens if include_usage else None,
                    cached,
                    seq,
                    behavior,
                    (start, finish_reason, prompt_ids),
                )
            if seq is not None:
                await seq.wait(n + 1)  # until finished
                if seq.failed:
                    return _error_response(503, "mock backend is shutting down")
                cached = seq.cached_tokens
            elif behavior.token_delay > 0 and n > 0:
                await asyncio.sleep(n * behavior.token_delay)
        finally:
            if seq is not None:
                self._scheduler.discard(seq)

        body_bytes = shapes.completion_body(chat, response_id, self.model, start + n, prompt_tokens, cached,
                                            start=start, finish_reason=finish_reason, prompt_ids=prompt_ids)
        return web.Response(body=body_bytes, content_type=_JSON)

    async def _stream(
        self,
        request: web.BaseRequest,
        chat: bool,
        response_id: str,
        n: int,
        usage_prompt_tokens: int | None,
        cached: int,
        seq: EngineSequence | None,
        behavior: MockBehavior,
        resume: tuple[int, str, list[int] | None] = (0, "length", None),
    ) -> web.StreamResponse:
        """One SSE answer (see `write_stream`; `resume` is its start, finish reason and prompt ids);
        a client gone mid-stream counts as a disconnect."""
        # Headers go out at once, as an engine's do; the first token follows after queueing and prefill.
        response = web.StreamResponse(headers=shapes.SSE_HEADERS)
        await response.prepare(request)
        assert self._stopping is not None
        try:
            await write_stream(
                request, response, head=shapes.chunk_head(chat, response_id, self._model_json), chat=chat,
                n=n, usage_prompt_tokens=usage_prompt_tokens, cached=cached, seq=seq, behavior=behavior,
                stopping=self._stopping, start=resume[0], finish_reason=resume[1], prompt_ids=resume[2],
            )
        except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
            if not self._closing:
                self.disconnects += 1
        return response

    def _preemption(self, body: dict[str, Any], total: int, behavior: MockBehavior) -> tuple[int, int, str]:
        """(first token, tokens of this attempt, finish reason) of a generating request: it goes on
        after its ``completion_token_ids`` and stops early if ``preempt_after_tokens`` says so."""
        if self.role == "prefill":
            return 0, total, "length"
        start = min(shapes.continued_from(body), total)
        n = total - start
        after = behavior.preemption_point(body) if behavior.preempt_after_tokens is not None else None
        if after is not None and after < n:
            return start, after, "pd_reschedule"
        return start, n, "length"

    async def _health(self, request: web.BaseRequest) -> web.StreamResponse:
        self.health_checks += 1
        behavior = self.behavior
        if behavior.health_delay > 0:
            await asyncio.sleep(behavior.health_delay)
        status = behavior.health_status
        body = _OK if status == 200 else b'{"status": "unhealthy"}'
        return web.Response(status=status, body=body, content_type=_JSON)

    async def _models(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=self._models_body, content_type=_JSON)

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        self.metrics_requests += 1
        text = _METRICS_TEMPLATE.format(running=self.requests_running, waiting=self.requests_waiting)
        return web.Response(body=text.encode(), headers={"Content-Type": _PROMETHEUS_CONTENT_TYPE})

    async def _abort_requests(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error_response(400, f"malformed JSON body: {exc}")
        self.aborts.append(body)
        return web.Response(body=_OK, content_type=_JSON)
