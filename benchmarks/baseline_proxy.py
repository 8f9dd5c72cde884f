"""The per-request-session baseline: FastDeploy's first Python router's proxy design, for comparison.

FastDeploy's original router (fastdeploy/router/router.py, ``_generate`` and ``_generate_stream``)
parsed the client's body into a dict, then for every request opened a NEW
``aiohttp.ClientSession`` (so a new TCP connection: no keep-alive reuse), posted the dict
with ``json=`` (encoding it again), decoded the instance's JSON answer and encoded it once
more for the client; streams were relayed with ``iter_chunked(64 KiB)``. This file rebuilds
exactly that per-request cost on a plain aiohttp server, so ``bench_router.py`` can measure
what fdrouter's pooled, pass-through design buys. It is deliberately NOT a good proxy: no
error mapping, no disconnect handling, no health checks.

The event loop is uvloop when installed, as for fdrouter, so the comparison is of the two
designs and not of two event loops.

    python benchmarks/baseline_proxy.py --port 9100 --backend http://127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from aiohttp import web

try:  # same optional speed-up as fdrouter's CLI
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None  # type: ignore[assignment]

# FastDeploy's AIOHTTP_STREAM_READ_CHUNK_SIZE: "prevent aiohttp's 'Chunk too big' error"
STREAM_CHUNK_SIZE = 64 * 1024
# FastDeploy's RouterArgs.request_timeout_secs default
REQUEST_TIMEOUT_SECS = 1800
BACKEND_KEY = web.AppKey("backend", str)
ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


async def generation(request: web.Request) -> web.StreamResponse:
    """Proxy one chat/completions request the pre-fix way: parse, new session, re-encode."""
    body = await request.json()  # FastAPI handed the router a parsed dict, too
    url = request.app[BACKEND_KEY] + request.path
    if body.get("stream", False):
        return await _generate_stream(request, url, body)
    return await _generate(url, body)


async def _generate(url: str, body: dict) -> web.Response:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECS)
    # A session per request: its connector, and so its TCP connection, dies with it.
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, json=body) as resp:
            answer = await resp.json(content_type=None)
            return web.json_response(answer, status=resp.status)


async def _generate_stream(request: web.Request, url: str, body: dict) -> web.StreamResponse:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, json=body) as resp:
            response = web.StreamResponse(status=resp.status, headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in resp.content.iter_chunked(STREAM_CHUNK_SIZE):
                await response.write(chunk)
            await response.write_eof()
            return response


def build_app(backend: str) -> web.Application:
    """The baseline proxy's app, forwarding both generation endpoints to ``backend``."""
    app = web.Application()
    app[BACKEND_KEY] = backend.rstrip("/")
    for path in ENDPOINTS:
        app.router.add_post(path, generation)
    return app


async def serve(host: str, port: int, backend: str) -> None:
    """Serve until SIGINT/SIGTERM; prints ``baseline proxy listening on URL`` once bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(build_app(backend), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        # The benchmark waits for this exact line (site.port is the bound port, also for --port 0).
        print(f"baseline proxy listening on http://{host}:{site.port} -> {backend}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Per-request-session baseline proxy (FastDeploy's pre-fix design).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="bind port; 0 picks a free one (default 0)")
    parser.add_argument("--backend", required=True, help="base URL of the instance, e.g. http://127.0.0.1:8001")
    args = parser.parse_args(argv)
    coro = serve(args.host, args.port, args.backend)
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


__all__ = ["build_app", "main", "serve"]

if __name__ == "__main__":
    sys.exit(main())
