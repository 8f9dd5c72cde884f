"""Run a server that prints nothing useful, and print ``NAME listening on URL`` once its port accepts connections.

``fdrouter.testing.processes.Spawner`` waits for that line, which fdrouter's own servers print;
a peer such as sglang-router does not. This script becomes the server (``exec``: same process
id, so the benchmark's /proc CPU readings are the server's) after forking a watcher that polls
the port and prints the line. The watcher is a grandchild, reparented away at once, so it
leaves no zombie behind, and it gives up after ``--timeout`` seconds or when the server is gone.

    python benchmarks/announce_listening.py --name sglang-router --url http://127.0.0.1:30000 -- \\
        python -m sglang_router.launch_router --port 30000 ...
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from urllib.parse import urlsplit


def _watch(name: str, url: str, server_pid: int, timeout: float) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)  # still there?
        except OSError:
            return
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
                print(f"{name} listening on {url}", flush=True)
                return
        except OSError:
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """Fork the watcher, then exec the server command (never returns on success)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the name to print")
    parser.add_argument("--url", required=True, help="http://HOST:PORT the server will listen on")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up watching after this (default 120 s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or urlsplit(args.url).port is None:
        parser.error("need --url with a port and a command after --")
    server_pid = os.getpid()
    sys.stdout.flush()
    child = os.fork()
    if child == 0:  # the child forks the watcher and exits, so init (not the server) reaps the watcher
        if os.fork() == 0:
            try:
                _watch(args.name, args.url, server_pid, args.timeout)
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"announce_listening: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
    return 127


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
