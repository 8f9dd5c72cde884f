"""Re-record the fixtures in data/: real wrk runs against a small local server, and /proc around one of them.

    python tests/benchmarks/record_fixtures.py          # needs wrk on PATH (apt-get install wrk), Linux

The server (this file with ``--serve``) answers on three paths: ``/ok`` at once; ``/slow``
every 20th request after 20 ms (so wrk's coordinated-omission correction adds samples);
``/flaky`` with a 503 to every 5th request and by dropping the connection on every 7th (wrk's
socket read errors). It counts what it did and tells on ``/stats``, with its own CPU time; its
process name has parentheses and a space, as a /proc/PID/stat parser must survive. The tests
assert on the recorded numbers, so after re-recording update the numbers they spell out.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SLOW_EVERY, SLOW_SECONDS = 20, 0.020
STATUS_EVERY, DROP_EVERY = 5, 7
PROCESS_NAME = b"srv) (x"


def serve() -> None:
    """The recording server: prints its port, then serves until killed."""
    import httptools

    ctypes.CDLL("libc.so.6").prctl(15, PROCESS_NAME)  # 15 = PR_SET_NAME: shows in /proc/PID/stat
    counts = {"ok": 0, "slow": 0, "slow_delayed": 0, "flaky": 0, "status_503": 0, "dropped": 0}

    def reply(transport: asyncio.Transport, status: int, body: bytes) -> None:
        reason = {200: b"OK", 503: b"Service Unavailable"}[status]
        transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (status, reason, len(body), body))

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_message_complete(self) -> None:
            path, t = self.url.decode(), self.transport
            if path == "/stats":
                reply(t, 200, json.dumps({**counts, "process_time": time.process_time()}).encode())
            elif path == "/slow":
                counts["slow"] += 1
                if counts["slow"] % SLOW_EVERY == 0:
                    counts["slow_delayed"] += 1
                    asyncio.get_running_loop().call_later(SLOW_SECONDS, reply, t, 200, b'{"slow":true}')
                else:
                    reply(t, 200, b'{"slow":false}')
            elif path == "/flaky":
                counts["flaky"] += 1
                if counts["flaky"] % DROP_EVERY == 0:
                    counts["dropped"] += 1
                    t.abort()
                elif counts["flaky"] % STATUS_EVERY == 0:
                    counts["status_503"] += 1
                    reply(t, 503, b'{"error":"busy"}')
                else:
                    reply(t, 200, b'{"ok":true}')
            else:
                counts["ok"] += 1
                reply(t, 200, b'{"ok":true}')

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def stats(port: int) -> dict:
    """The server's counters and CPU time."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return json.loads(resp.read())


def wrk(*args: str) -> str:
    """wrk's whole output."""
    return subprocess.run(["wrk", *args], capture_output=True, text=True, timeout=60, check=True).stdout


def main() -> None:
    """Record every fixture into data/."""
    sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
    from fdbench.workload import request_body
    from fdbench.wrk import wrk_script

    if shutil.which("wrk") is None:
        sys.exit("record_fixtures: no wrk on PATH (apt-get install wrk)")
    script = DATA / "bench_script.lua"  # the benchmark's own script, as WrkLoad writes it
    script.write_text(wrk_script(request_body(stream=False, prompt_chars=100)))
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        (DATA / "wrk_plain.txt").write_text(wrk("-c", "8", "-t", "1", "-d", "1s", "--latency", base + "/ok"))
        (DATA / "wrk_errors.txt").write_text(
            wrk("-c", "4", "-t", "1", "-d", "1s", "--latency", "-s", str(script), base + "/flaky"))
        cpu_before, stat_before = stats(port), Path(f"/proc/{server.pid}/stat").read_text()
        machine_before, started = Path("/proc/stat").read_text(), time.monotonic()
        text = wrk("-c", "4", "-t", "1", "-d", "2s", "--latency", "-s", str(script), base + "/slow")
        cpu_after, stat_after = stats(port), Path(f"/proc/{server.pid}/stat").read_text()
        machine_after, elapsed = Path("/proc/stat").read_text(), time.monotonic() - started
        (DATA / "wrk_histogram.txt").write_text(text)
        (DATA / "proc_pid_stat_before.txt").write_text(stat_before)
        (DATA / "proc_pid_stat_after.txt").write_text(stat_after)
        (DATA / "proc_stat_before.txt").write_text(machine_before)
        (DATA / "proc_stat_after.txt").write_text(machine_after)
        meta = {
            "slow_every": SLOW_EVERY, "slow_seconds": SLOW_SECONDS, "status_every": STATUS_EVERY,
            "drop_every": DROP_EVERY, "connections": {"wrk_plain": 8, "wrk_errors": 4, "wrk_histogram": 4},
            "server_before_histogram_run": cpu_before, "server_after_histogram_run": cpu_after,
            "histogram_run_elapsed_seconds": round(elapsed, 6), "clk_tck": os.sysconf("SC_CLK_TCK"),
            "cpus": os.cpu_count(),
        }
        (DATA / "recording.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        server.kill()
        server.wait()
    script.unlink()


__all__ = ["main", "serve"]

if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main()
