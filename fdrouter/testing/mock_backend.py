"""A mock OpenAI-compatible LLM instance: a real aiohttp server standing in for FastDeploy/vLLM.

Tests, notebooks and benchmarks put it behind the router. It speaks just enough of the OpenAI
and FastDeploy HTTP surface (generation, /health, /v1/models, /metrics, /v1/abort_requests),
plays a PD role (prefill answers one token), can be told to misbehave at runtime through
`MockBehavior`, and counts what really happened on the wire: TCP connections, requests,
client disconnects.

It is also the backend of the throughput benchmarks, so the zero-delay path does little:
no routing table, no middleware, no access log, chunk text built from string templates.

From the shell::

    python -m fdrouter.testing.mock_backend --port 8001 --role decode --token-delay 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

try:  # Probed once: uvloop only speeds up the CLI, nothing depends on it.
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (the `speed` extra)
    uvloop = None

__all__ = ["ROLES", "MockBackend", "MockBehavior", "free_port", "main"]

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
    "fastdeploy:num_requests_waiting 0\n"
)

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


def _text_of(content: Any) -> str:
    # Chat content is a string or a list of parts ({"type": "text", "text": ...}); other parts count as nothing.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _estimate_prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """A cheap token estimate: len(text) // 4 (OpenAI's rule of thumb); token-id prompts count exactly."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return 1
        text = "".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        return max(1, len(text) // 4)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return max(1, len(prompt) // 4)
    if isinstance(prompt, list):
        if all(isinstance(x, int) for x in prompt):  # one prompt given as token ids
            return max(1, len(prompt))
        return max(
            1, sum(len(x) // 4 if isinstance(x, str) else len(x) for x in prompt if isinstance(x, str | list))
        )
    return 1


@dataclass
class MockBehavior:
    """How a MockBackend answers. Mutable: tests flip fields while the server runs.

    Generation requests read the fields when they arrive, so a change applies to the next request.
    """

    output_tokens: int = 8
    """Tokens generated per request; the client's max_tokens caps it if smaller."""
    token_delay: float = 0.0
    """Seconds per generated token: between stream chunks, or n * delay before a non-streaming answer."""
    fail_status: int | None = None
    """Generation endpoints answer this status with an OpenAI error body."""
    reset_after_chunks: int | None = None
    """Streaming: abort the TCP connection after this many data chunks, before [DONE]."""
    hang_before_headers: bool = False
    """Generation requests never answer; they wait until the client disconnects or the server closes."""
    health_status: int = 200
    """Status of GET /health."""
    health_delay: float = 0.0
    """Seconds GET /health waits before answering: a slow or hung health endpoint."""


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
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECEIVED_MAXLEN)
        self.aborts: list[Any] = []

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

    async def wait_for(self, predicate: Callable[[MockBackend], bool], timeout: float = 2.0) -> bool:
        """Poll ``predicate(self)`` every 10 ms until it is true (True) or `timeout` seconds pass (False)."""
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
        """Zero the cumulative counters and histories. Gauges of what is open now are left alone."""
        self.connections_accepted = 0
        self.requests_total = 0
        self.disconnects = 0
        self.health_checks = 0
        self.received.clear()
        self.aborts.clear()

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

        behavior = self.behavior
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
        prompt_tokens = _estimate_prompt_tokens(body, chat)
        request_id = body.get("request_id")
        prefix = "chatcmpl-" if chat else "cmpl-"
        # Echo the router's request_id the way FastDeploy does, so tests can correlate the legs.
        response_id = prefix + (request_id if isinstance(request_id, str) else f"mock{next(self._ids)}")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}

        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(
                request, chat, response_id, n, usage if include_usage else None, behavior
            )

        if behavior.token_delay > 0 and n > 0:
            await asyncio.sleep(n * behavior.token_delay)
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
            "usage": usage,
        }
        return web.Response(body=json.dumps(answer).encode(), content_type=_JSON)

    def _chunks(self, chat: bool, response_id: str, n: int, usage: dict[str, int] | None) -> Iterator[bytes]:
        """The SSE data events of one stream, [DONE] excluded; built from templates, not per-chunk dicts."""
        created = int(time.time())
        object_name = "chat.completion.chunk" if chat else "text_completion"
        head = (
            f'data: {{"id":{json.dumps(response_id)},"object":"{object_name}","created":{created},'
            f'"model":{self._model_json},"choices":[{{"index":0,'
        )
        for i in range(n):
            # Token text is "tokN " and needs no JSON escaping.
            if chat:
                role = '"role":"assistant",' if i == 0 else ""
                yield f'{head}"delta":{{{role}"content":"{_token(i)}"}},"finish_reason":null}}]}}\n\n'.encode()
            else:
                yield f'{head}"text":"{_token(i)}","logprobs":null,"finish_reason":null}}]}}\n\n'.encode()
        last: dict[str, Any] = {
            "id": response_id,
            "object": object_name,
            "created": created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "length"}
                if chat
                else {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}
            ],
        }
        if usage is not None:
            last["usage"] = usage
        yield b"data: " + json.dumps(last, separators=(",", ":")).encode() + b"\n\n"

    async def _stream(
        self,
        request: web.BaseRequest,
        chat: bool,
        response_id: str,
        n: int,
        usage: dict[str, int] | None,
        behavior: MockBehavior,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        delay = behavior.token_delay
        reset_after = behavior.reset_after_chunks
        sent = 0
        try:
            for chunk in self._chunks(chat, response_id, n, usage):
                if reset_after is not None and sent >= reset_after:
                    return self._reset(request, response)
                if delay > 0 and sent < n:  # token chunks take time; the finishing chunk doesn't
                    await asyncio.sleep(delay)
                await response.write(chunk)
                sent += 1
            if reset_after is not None:  # reset_after >= all chunks: still no [DONE]
                return self._reset(request, response)
            await response.write(_DONE)
        except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
            if not self._closing:
                self.disconnects += 1
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
        text = _METRICS_TEMPLATE.format(running=self.requests_in_flight)
        return web.Response(body=text.encode(), headers={"Content-Type": _PROMETHEUS_CONTENT_TYPE})

    async def _abort_requests(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error_response(400, f"malformed JSON body: {exc}")
        self.aborts.append(body)
        return web.Response(body=_OK, content_type=_JSON)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (bind to port 0 where you can: this can race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- command line ----------------------------------------------------------------------------------


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _port(text: str) -> int:
    value = _non_negative(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


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
        help="seconds per generated token (default %(default)s)",
    )
    parser.add_argument("--model", default="mock-model", help="served model name (default %(default)s)")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop; auto uses uvloop when installed (default auto)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    behavior = MockBehavior(output_tokens=args.output_tokens, token_delay=args.token_delay)
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
    if uvloop is not None and args.loop != "asyncio":
        uvloop.run(_serve(args))
    else:
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
