"""announce_listening.py lets Spawner start a server that never prints ``listening on URL`` (sglang-router)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from fdrouter.testing.processes import Spawner

ANNOUNCE = Path(__file__).resolve().parents[2] / "benchmarks" / "announce_listening.py"


async def test_a_silent_server_is_announced_once_it_accepts_connections_and_keeps_its_process_id(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        port = spawner.hold_port()  # http.server sets SO_REUSEADDR, so it can listen on a held port
        url = f"http://127.0.0.1:{port}"
        proc = await spawner.start("http.server", [
            sys.executable, str(ANNOUNCE), "--name", "http.server", "--url", url, "--timeout", "30", "--",
            sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path),
        ], own_session=True)
        assert proc.url == url
        with urllib.request.urlopen(url + "/", timeout=10) as resp:
            assert resp.status == 200
        # exec, not a child: the pid whose CPU the benchmark reads is the server's own
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"http.server" in cmdline and str(ANNOUNCE).encode() not in cmdline
    finally:
        await spawner.close(graceful=True)


async def test_a_server_that_cannot_start_fails_the_start_with_its_message(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="cannot run no-such-server-binary"):
            await spawner.start("missing", [
                sys.executable, str(ANNOUNCE), "--name", "x", "--url", "http://127.0.0.1:9", "--",
                "no-such-server-binary",
            ], timeout=30)
    finally:
        await spawner.close()
