"""A mock OpenAI-compatible LLM instance: a real aiohttp server standing in for FastDeploy/vLLM.

Tests, notebooks and benchmarks put it behind the router. It speaks just enough of the OpenAI
and FastDeploy HTTP surface (generation, /health, /v1/models, /metrics, /v1/abort_requests),
plays a PD role (prefill answers one token), can be told to misbehave at runtime through
`MockBehavior`, and counts what really happened on the wire: TCP connections, requests,
client disconnects.

Like a real engine it keeps a prefix KV cache (`fdrouter.sim.kvcache.PrefixCache`) and reports the
prompt tokens it found there as ``usage.prompt_tokens_details.cached_tokens``, OpenAI's field,
so cache-aware routing can be measured end to end. With ``MockBehavior.engine`` set it also
*times* like one (`fdrouter.sim.engine_model.EngineModel`): continuous batching of at most
``max_batch`` sequences, prefill time growing with the uncached prompt tokens, decode steps
growing with the batch. The discrete-event simulator uses the same two modules, so a live run
on mocks and a simulation of it agree.

It is also the backend of the throughput benchmarks, so the default path (no engine model)
does little: no routing table, no middleware, no access log, no scheduler task, chunk text
built from string templates; the cache costs a few dict operations per request.

From the shell::

    python -m fdrouter.testing.mock_backend --port 8001 --role decode --token-delay 0.01
    python -m fdrouter.testing.mock_backend --port 8001 --engine --max-batch 8 --prefill-per-token 0.0001
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from fdrouter.sim.engine_model import EngineModel
from fdrouter.sim.kvcache import CHARS_PER_TOKEN, PrefixCache, text_block_hashes, token_block_hashes
from fdrouter.validate import prompt_text

from .ports import closed_port, free_port

try:  # Probed once: uvloop only speeds up the CLI, nothing depends on it.
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (the `speed` extra)
    uvloop = None

__all__ = ["ROLES", "MockBackend", "MockBehavior", "closed_port", "free_port", "main"]

ROLES = ("mixed", "prefill", "decode")

# Enough history for any test to inspect, small enough that a long benchmark stays flat in memory.
RECEIVED_MAXLEN = 1000

# close() gives in-flight handlers this long per phase (aiohttp waits, then cancels, then waits
# again) before cutting connections; aiohttp's own default of 60 s is for real servers.
SHUTDOWN_TIMEOUT = 0.5

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DONE = b"data: [DONE]\n\n"
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

# Sizes the prefix cache when no engine model is set (EngineModel is frozen: safe to share).
_DEFAULT_ENGINE = EngineModel()

# Non-streaming content for a given token count; bounded so odd max_tokens values can't grow it forever.
_CONTENT_CACHE: dict[int, str] = {}
_CONTENT_CACHE_MAX = 256


def _token(i: int) -> str:
    return f"tok{i} "


def _content(n: int) -> str:
    text = _CONTENT_CACHE.get(n)
    if text is None:
        text = "".join(_token(i) for i in range(n))
        if len(_CONTENT_CACHE) < _CONTENT_CACHE_MAX:
            _CONTENT_CACHE[n] = text
    return text


def _error_response(status: int, message: str) -> web.Response:
    """An OpenAI-shaped error: {"error": {"message", "type", "code"}}."""
    error_type = "invalid_request_error" if status < 500 else "server_error"
    body = json.dumps({"error": {"message": message, "type": error_type, "code": status}})
    return web.Response(status=status, body=body.encode(), content_type=_JSON)


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    """The prompt as one string: the router's own ``prompt_text``, so its cache-aware policy and
    this cache see the same prefixes."""
    if chat and "messages" not in body:
        return ""
    return prompt_text(body)


def _token_ids(prompt: Any) -> list[int] | None:
    """A completions prompt given as token ids (one list, or a batch of lists taken as one), else None."""
    if not isinstance(prompt, list) or not prompt:
        return None
    if all(type(x) is int for x in prompt):
        return prompt
    if all(isinstance(x, list) and all(type(t) is int for t in x) for x in prompt):
        return [t for x in prompt for t in x]
    return None


def _prompt_blocks(body: dict[str, Any], chat: bool, block_tokens: int | None) -> tuple[int, Sequence[int]]:
    """(estimated prompt tokens, chained block hashes); no hashing when `block_tokens` is None.

    The estimate is the router's: len(text) // 4 (OpenAI's rule of thumb); token ids count exactly.
    """
    ids = None if chat else _token_ids(body.get("prompt"))
    if ids is not None:
        return max(1, len(ids)), (() if block_tokens is None else token_block_hashes(ids, block_tokens))
    text = _prompt_text(body, chat)
    tokens = max(1, len(text) // CHARS_PER_TOKEN)
    return tokens, (() if block_tokens is None else text_block_hashes(text, block_tokens))


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


@dataclass
class MockBehavior:
    """How a MockBackend answers. Mutable: tests flip fields while the server runs.

    Generation requests read the fields when they arrive, so a change applies to the next request.
    """

    output_tokens: int = 8
    """Tokens generated per request; the client's max_tokens caps it if smaller."""
    token_delay: float = 0.0
    """Seconds per generated token: between stream chunks, or n * delay before a non-streaming answer.

    Ignored while `engine` is set."""
    engine: EngineModel | None = None
    """A latency model: continuous batching timed by this EngineModel (see `MockBackend`), and the
    prefix cache sized by it. None: no batch limit, `token_delay` pacing, a default-sized cache."""
    fail_status: int | None = None
    """Generation endpoints answer this status with an OpenAI error body."""
    reset_after_chunks: int | None = None
    """Streaming: abort the TCP connection after this many data chunks, before [DONE]."""
    stall_after_chunks: int | None = None
    """Streaming: after this many data chunks (0: right after the headers) go silent, before [DONE],
    until the client disconnects or the server closes."""
    hang_before_headers: bool = False
    """Generation requests never answer; they wait until the client disconnects or the server closes."""
    health_status: int = 200
    """Status of GET /health."""
    health_delay: float = 0.0
    """Seconds GET /health waits before answering: a slow or hung health endpoint."""
    gate: asyncio.Event | None = None
    """Generation requests that arrive while this is an unset Event wait for ``gate.set()`` (after
    reading their body, counted in flight) before answering as the other fields say. Lets a test
    decide when answers come instead of timing them: ``behavior.gate = asyncio.Event()``, send,
    check what is in flight, then ``gate.set()``. None (the default): no wait."""


class _Sequence:
    """One generation request inside the engine model: what the scheduler and its handler share."""

    __slots__ = (
        "completion_tokens",
        "prompt_tokens",
        "hashes",
        "prefill",
        "cached_tokens",
        "admitted",
        "produced",
        "prefilled",
        "finished",
        "failed",
        "_waiter",
    )

    def __init__(
        self, completion_tokens: int, prompt_tokens: int, hashes: Sequence[int], prefill: bool
    ) -> None:
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens
        self.hashes = hashes
        self.prefill = prefill  # False on a PD decode instance: the KV cache arrives computed
        self.cached_tokens = 0
        self.admitted = False  # in the running batch, no longer waiting
        self.produced = 0
        self.prefilled = not prefill
        self.finished = False
        self.failed = False
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self, produced: int) -> None:
        """Until `produced` tokens exist or the sequence is finished (a large number: until finished)."""
        while self.produced < produced and not self.finished:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Scheduler:
    """Continuous batching over an EngineModel, one asyncio task per backend while there is work.

    Each step is one iteration: if sequences were just admitted (FIFO, while fewer than
    ``max_batch`` run) and need a prefill, the step prefills them together in the sum of their
    ``prefill_time(uncached tokens)`` and yields each one's first token; otherwise it is a
    decode step of ``step_time(running)`` yielding one token per running sequence. Prefill
    first and no chunked prefill, as vLLM's V0 scheduler by default: a burst of admissions
    stalls the running decodes for a step. The prefix-cache lookup happens at admission
    (``admit``), as in an engine, so a waiting request may hit blocks a request ahead of it
    inserted. A PD decode instance's sequences skip the prefill: their first token comes with
    their first decode step. These are the rules of the simulator's engine
    (`fdrouter.sim.instance`), which jumps between events where this one sleeps per step.

    Steps are timed against a running deadline, so asyncio's late wake-ups do not add up into
    a slower engine; more than a step behind (an overloaded loop), it resets rather than burst.
    """

    def __init__(self, admit: Callable[[_Sequence], None]) -> None:
        self.running: list[_Sequence] = []
        self.waiting: collections.deque[_Sequence] = collections.deque()
        self.engine = _DEFAULT_ENGINE
        self._admit = admit
        self._task: asyncio.Task[None] | None = None

    def submit(self, seq: _Sequence, engine: EngineModel) -> None:
        """Queue `seq`; the latest engine model times the steps from now on."""
        self.engine = engine
        self.waiting.append(seq)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, seq: _Sequence) -> None:
        """Take `seq` out (finished, or its client left): frees its batch slot at once."""
        if not seq.finished:
            seq.finished = True
            if seq.admitted:
                self.running.remove(seq)
            else:
                self.waiting.remove(seq)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _plan(self) -> tuple[float, list[_Sequence], bool]:
        """Admit what fits, then choose the next step: (seconds, sequences it advances, is prefill)."""
        engine, running, waiting = self.engine, self.running, self.waiting
        to_prefill = []
        while waiting and len(running) < engine.max_batch:
            seq = waiting.popleft()
            running.append(seq)
            seq.admitted = True
            self._admit(seq)
            if not seq.prefilled:
                to_prefill.append(seq)
        if to_prefill:
            seconds = sum(engine.prefill_time(s.prompt_tokens - s.cached_tokens) for s in to_prefill)
            return seconds, to_prefill, True
        return engine.step_time(len(running)), [s for s in running if s.prefilled], False

    def _finish_step(self, advancing: list[_Sequence], prefill: bool) -> None:
        """The step's tokens exist now: count them, wake their handlers, retire finished sequences."""
        done = False
        for seq in advancing:
            if seq.finished:  # its client left during the step
                continue
            if prefill:
                seq.prefilled = True
            if seq.produced < seq.completion_tokens:
                seq.produced += 1
            if seq.produced >= seq.completion_tokens:
                seq.finished = done = True
            seq.wake()
        if done:
            self.running = [s for s in self.running if not s.finished]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        try:
            while self.running or self.waiting:
                seconds, advancing, prefill = self._plan()
                deadline += seconds
                delay = deadline - loop.time()
                if delay < -seconds:  # more than a step behind: restart the clock rather than burst
                    deadline -= delay
                await asyncio.sleep(max(0.0, delay))  # sleep(0) still lets the handlers run
                self._finish_step(advancing, prefill)
        except BaseException:
            # close() cancelled us, or a bug: either way no handler may wait forever.
            for seq in [*self.running, *self.waiting]:
                seq.finished = seq.failed = True
                seq.wake()
            self.running.clear()
            self.waiting.clear()
            raise


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting real TCP connections as the protocol sees them."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        backend: MockBackend,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._backend = backend
        # Our own view of open transports: aiohttp's dict is cleared at shutdown, before they close.
        self.open_transports: dict[RequestHandler, asyncio.Transport] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open_transports[handler] = transport
        self._backend.connections_accepted += 1
        self._backend.connections_open += 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        # aiohttp calls this once per connection (it drops its manager reference right after).
        if self.open_transports.pop(handler, None) is not None:
            self._backend.connections_open -= 1


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

    Engine model (``behavior.engine`` set): see `_Scheduler`. At most ``max_batch`` requests
    run, the rest wait FIFO; ``/metrics`` reports both gauges. A streaming answer sends its
    headers at once and each token chunk when the engine produces it (time to first token =
    queueing + prefill); a non-streaming one answers after the last token. A client that leaves
    frees its batch slot at once.
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

        self.connections_accepted = 0
        self.connections_open = 0
        self.requests_total = 0
        self.requests_in_flight = 0
        self.disconnects = 0
        self.health_checks = 0
        self.metrics_requests = 0
        """GET /metrics answered: how often something scraped this instance."""
        self.prompt_tokens_total = 0
        """Prompt tokens this instance prefilled (looked up in its prefix cache)."""
        self.cached_tokens_total = 0
        """Of those, the tokens found in the prefix cache."""
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECEIVED_MAXLEN)
        self.received_headers: collections.deque[Mapping[str, str]] = collections.deque(
            maxlen=RECEIVED_MAXLEN
        )
        """The headers of the requests in `received` (case-insensitive mappings), same order."""
        self.aborts: list[Any] = []
        engine = self.behavior.engine or _DEFAULT_ENGINE
        self.prefix_cache = PrefixCache(engine.cache_blocks, engine.block_tokens)
        """Replaced when a new engine model changes the block size; ``clear()`` it for a cold start."""
        self._scheduler = _Scheduler(self._admit)

        self._model_json = json.dumps(model)
        self._models_body = json.dumps(
            {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "mock"}]}
        ).encode()
        self._ids = count()
        self._server: _CountingServer | None = None
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
        }

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8001``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<MockBackend {self.url} role={self.role}>"

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
        self._server = _CountingServer(
            self._dispatch, backend=self, handler_cancellation=True, access_log=None
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
        self.prompt_tokens_total = 0
        self.cached_tokens_total = 0
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
        elif cache.capacity_blocks != engine.cache_blocks:
            cache.capacity_blocks = engine.cache_blocks  # a smaller capacity evicts on the next insert
        return cache

    def _lookup(self, prompt_tokens: int, hashes: Sequence[int]) -> int:
        """An engine's admission: count the cached prefix, cache the whole prompt; cached tokens."""
        cached = self.prefix_cache.lookup_and_insert(hashes)
        self.prompt_tokens_total += prompt_tokens
        self.cached_tokens_total += cached
        return cached

    def _admit(self, seq: _Sequence) -> None:
        if seq.prefill:
            seq.cached_tokens = self._lookup(seq.prompt_tokens, seq.hashes)

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

        if self.role == "prefill":
            n = 1  # a prefill instance computes the KV cache and emits the first token only
        else:
            n = behavior.output_tokens
            max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
            if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 <= max_tokens < n:
                n = max_tokens
        engine = behavior.engine
        prefill = self.role != "decode"  # a decode instance gets the KV cache computed: no lookup
        cache = self._cache_for(engine or _DEFAULT_ENGINE)
        prompt_tokens, hashes = _prompt_blocks(body, chat, cache.block_tokens if prefill else None)
        request_id = body.get("request_id")
        prefix = "chatcmpl-" if chat else "cmpl-"
        # Echo the router's request_id the way FastDeploy does, so tests can correlate the legs.
        response_id = prefix + (request_id if isinstance(request_id, str) else f"mock{next(self._ids)}")

        seq: _Sequence | None = None
        cached = 0
        if engine is None:
            if prefill:
                cached = self._lookup(prompt_tokens, hashes)
        else:
            seq = _Sequence(n, prompt_tokens, hashes, prefill)
            self._scheduler.submit(seq, engine)
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

        content = _content(n)
        choice: dict[str, Any]
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "length",
            }
        else:
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": "length"}
        answer = {
            "id": response_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": _usage(prompt_tokens, n, cached),
        }
        return web.Response(body=json.dumps(answer).encode(), content_type=_JSON)

    def _chunk_head(self, chat: bool, response_id: str) -> str:
        """The fixed start of every chunk of one stream; chunks are built from templates, not dicts."""
        object_name = "chat.completion.chunk" if chat else "text_completion"
        return (
            f'data: {{"id":{json.dumps(response_id)},"object":"{object_name}","created":{int(time.time())},'
            f'"model":{self._model_json},"choices":[{{"index":0,'
        )

    @staticmethod
    def _token_chunk(head: str, chat: bool, i: int) -> bytes:
        # Token text is "tokN " and needs no JSON escaping.
        if chat:
            role = '"role":"assistant",' if i == 0 else ""
            return f'{head}"delta":{{{role}"content":"{_token(i)}"}},"finish_reason":null}}]}}\n\n'.encode()
        return f'{head}"text":"{_token(i)}","logprobs":null,"finish_reason":null}}]}}\n\n'.encode()

    @staticmethod
    def _last_chunk(head: str, chat: bool, usage: dict[str, Any] | None) -> bytes:
        if chat:
            choice = '"delta":{},"finish_reason":"length"}]'
        else:
            choice = '"text":"","logprobs":null,"finish_reason":"length"}]'
        tail = "" if usage is None else ',"usage":' + json.dumps(usage, separators=(",", ":"))
        return f"{head}{choice}{tail}}}\n\n".encode()

    async def _stream(
        self,
        request: web.BaseRequest,
        chat: bool,
        response_id: str,
        n: int,
        usage_prompt_tokens: int | None,
        cached: int,
        seq: _Sequence | None,
        behavior: MockBehavior,
    ) -> web.StreamResponse:
        """One SSE answer: a chunk per token, a finishing chunk (with usage if asked), [DONE].

        Paced by the engine model when `seq` is given, else by ``token_delay``; usage is
        sent when `usage_prompt_tokens` is not None (the client set stream_options.include_usage).
        """
        # Headers go out at once, as an engine's do; the first token follows after queueing and prefill.
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        delay = 0.0 if seq is not None else behavior.token_delay
        reset_after = behavior.reset_after_chunks
        stall_after = behavior.stall_after_chunks
        head = self._chunk_head(chat, response_id)
        try:
            for i in range(n):
                if reset_after is not None and i >= reset_after:
                    return self._reset(request, response)
                if stall_after is not None and i >= stall_after:
                    return await self._stall(response)
                if seq is not None:
                    await seq.wait(i + 1)
                    if seq.failed:
                        return self._reset(request, response)
                elif delay > 0:  # token chunks take time; the finishing chunk doesn't
                    await asyncio.sleep(delay)
                await response.write(self._token_chunk(head, chat, i))
            if seq is not None:
                await seq.wait(n + 1)  # n == 0: the prefill still has to happen
                if seq.failed:
                    return self._reset(request, response)
                cached = seq.cached_tokens
            if reset_after is not None and n >= reset_after:
                return self._reset(request, response)
            if stall_after is not None and n >= stall_after:
                return await self._stall(response)
            usage = None if usage_prompt_tokens is None else _usage(usage_prompt_tokens, n, cached)
            await response.write(self._last_chunk(head, chat, usage))
            if reset_after is not None:  # reset_after >= all chunks: still no [DONE]
                return self._reset(request, response)
            if stall_after is not None:
                return await self._stall(response)
            await response.write(_DONE)
        except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
            if not self._closing:
                self.disconnects += 1
        return response

    async def _stall(self, response: web.StreamResponse) -> web.StreamResponse:
        assert self._stopping is not None
        await self._stopping.wait()  # ends by cancellation (client gone) or close()
        return response

    @staticmethod
    def _reset(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
        # abort() sends RST without flushing; aiohttp then fails write_eof quietly (a ConnectionError).
        if request.transport is not None:
            request.transport.abort()
        return response

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



# -- command line ----------------------------------------------------------------------------------


def _at_least(kind: type[int] | type[float], minimum: int = 0) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], Any]:
    return _at_least(kind, 0)


def _port(text: str) -> int:
    value = _non_negative(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


# (flag, EngineModel field, parser, metavar, help); defaults are EngineModel's, shown in --help.
_ENGINE_FLAGS = (
    ("--max-batch", "max_batch", _at_least(int, 1), "N", "sequences running together; more wait FIFO"),
    ("--cache-blocks", "cache_blocks", _non_negative(int), "N", "prefix-cache capacity in blocks"),
    ("--block-tokens", "block_tokens", _at_least(int, 1), "N", "tokens per prefix-cache block"),
    (
        "--prefill-base",
        "prefill_base_s",
        _non_negative(float),
        "SECONDS",
        "fixed cost of each request's prefill",
    ),
    (
        "--prefill-per-token",
        "prefill_per_token_s",
        _non_negative(float),
        "SECONDS",
        "per uncached prompt token",
    ),
    (
        "--decode-step",
        "decode_base_s",
        _non_negative(float),
        "SECONDS",
        "decode step with one running sequence",
    ),
    (
        "--decode-per-seq",
        "decode_per_seq_s",
        _non_negative(float),
        "SECONDS",
        "added to a step per extra sequence",
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fdrouter.testing.mock_backend",
        description="Run a mock OpenAI-compatible LLM backend until SIGINT/SIGTERM.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port (0: pick a free one; default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--role", choices=ROLES, default="mixed", help="PD role (default mixed)")
    parser.add_argument(
        "--output-tokens",
        type=_non_negative(int),
        default=MockBehavior.output_tokens,
        help="tokens generated per request (default %(default)s)",
    )
    parser.add_argument(
        "--token-delay",
        type=_non_negative(float),
        default=MockBehavior.token_delay,
        help="seconds per generated token, without --engine (default %(default)s)",
    )
    parser.add_argument("--model", default="mock-model", help="served model name (default %(default)s)")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop; auto uses uvloop when installed (default auto)",
    )
    group = parser.add_argument_group(
        "engine model",
        "Time requests like a serving engine (fdrouter.sim.engine_model.EngineModel): continuous batching "
        "of at most --max-batch sequences, the rest waiting FIFO; a request's prefill costs "
        "--prefill-base plus --prefill-per-token per prompt token not in the prefix cache; a decode "
        "step costs --decode-step plus --decode-per-seq per extra running sequence. The prefix "
        "cache is always on; its size flags need --engine.",
    )
    group.add_argument(
        "--engine", action="store_true", help="enable the engine model (replaces --token-delay)"
    )
    for flag, field, kind, metavar, text in _ENGINE_FLAGS:
        default = getattr(_DEFAULT_ENGINE, field)
        group.add_argument(
            flag, dest=field, type=kind, metavar=metavar, default=None, help=f"{text} (default {default})"
        )
    return parser


def _behavior(parser: argparse.ArgumentParser, args: argparse.Namespace) -> MockBehavior:
    """The MockBehavior the flags describe; inconsistent flags are a usage error (exit 2)."""
    engine_fields = {field: getattr(args, field) for _, field, *_ in _ENGINE_FLAGS}
    given = {field: value for field, value in engine_fields.items() if value is not None}
    engine = None
    if args.engine:
        if args.token_delay > 0:
            parser.error("--token-delay has no effect with --engine (use --decode-step)")
        try:
            engine = EngineModel(**given)
        except ValueError as exc:
            parser.error(f"engine model: {exc}")
    elif given:
        flag = next(f for f, field, *_ in _ENGINE_FLAGS if field in given)
        parser.error(f"{flag} needs --engine")
    return MockBehavior(output_tokens=args.output_tokens, token_delay=args.token_delay, engine=engine)


async def _serve(args: argparse.Namespace, behavior: MockBehavior) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with MockBackend(
        role=args.role, host=args.host, port=args.port, model=args.model, behavior=behavior
    ) as backend:
        # Scripts wait for this exact line before sending traffic; flush so a pipe sees it now.
        print(f"mock backend listening on {backend.url} role={backend.role}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: serve until SIGINT/SIGTERM, then close and return 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.loop == "uvloop" and uvloop is None:
        parser.error("--loop uvloop: uvloop is not installed")
    behavior = _behavior(parser, args)
    if uvloop is not None and args.loop != "asyncio":
        uvloop.run(_serve(args, behavior))
    else:
        asyncio.run(_serve(args, behavior))
    return 0


if __name__ == "__main__":
    sys.exit(main())
