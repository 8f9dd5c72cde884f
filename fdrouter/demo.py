"""``make demo``: a router and two mock backends on loopback, a few requests, a table.

Runs in one process with nothing to configure: the embedded default shows what the router
does (registration, routing by load, non-streaming and streaming relay, a clean error).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .config import RouterConfig
from .server import RouterServer
from .testing import MockBackend, MockBehavior


async def _request(session: aiohttp.ClientSession, url: str, *, stream: bool, prompt: str) -> dict:
    body = {"model": "mock-model", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    start = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        if stream:
            chunks = [line async for line in resp.content if line.startswith(b"data: ")]
            detail = f"{len(chunks) - 1} chunks + [DONE]" if chunks and chunks[-1].strip() == b"data: [DONE]" \
                else f"{len(chunks)} events"
        else:
            payload = await resp.json()
            usage = payload.get("usage") or {}
            detail = f"{usage.get('completion_tokens', '?')} tokens" if resp.status == 200 \
                else payload["error"]["message"][:40]
        return {"kind": "stream" if stream else "json", "status": resp.status, "detail": detail,
                "ms": (time.perf_counter() - start) * 1000}


async def run_demo() -> int:
    """Start everything, send requests, print what happened; 0 when every answer was as expected."""
    behavior = MockBehavior(output_tokens=8, token_delay=0.01)
    async with MockBackend(behavior=behavior) as b1, MockBackend(behavior=behavior) as b2:
        async with RouterServer(RouterConfig(port=0)) as server, aiohttp.ClientSession() as session:
            print(f"router   {server.url}  (mixed mode, policy request_num)")
            for backend in (b1, b2):
                async with session.post(server.url + "/register", json=backend.register_info()) as resp:
                    print(f"backend  {backend.url}  register -> HTTP {resp.status}")
            jobs = [_request(session, server.url, stream=i % 2 == 1, prompt=f"question {i}") for i in range(8)]
            rows = await asyncio.gather(*jobs)
            async with session.post(server.url + "/v1/chat/completions", data=b"{oops") as resp:
                error = (await resp.json())["error"]
                rows.append({"kind": "bad", "status": resp.status, "detail": error["message"][:48], "ms": 0.0})
            await b2.close()  # one backend dies: requests keep flowing to the other one
            rows += [await _request(session, server.url, stream=False, prompt="after a crash") for _ in range(2)]
            async with session.get(server.url + "/registered") as resp:
                instances = (await resp.json())["instances"]
    print()
    print(f"{'#':>2}  {'kind':<6} {'status':>6}  {'ms':>7}  detail")
    for i, row in enumerate(rows):
        print(f"{i:>2}  {row['kind']:<6} {row['status']:>6}  {row['ms']:>7.1f}  {row['detail']}")
    print()
    print(f"{'instance':<24} {'requests':>8} {'in flight':>9}")
    for inst in instances:
        print(f"{inst['url']:<24} {inst['requests_total']:>8} {inst['in_flight_requests']:>9}")
    ok = [r["status"] for r in rows] == [200] * 8 + [400] + [200] * 2
    ok = ok and all(inst["in_flight_requests"] == 0 for inst in instances)
    print("\ndemo", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    """Entry point of ``python -m fdrouter.demo``."""
    return asyncio.run(run_demo())


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "run_demo"]
