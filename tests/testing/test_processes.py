"""Server processes: started until they say where they listen, stopped on every path."""

from __future__ import annotations

import signal
import sys

import aiohttp
import pytest

from fdrouter.testing.processes import Spawner

from .helpers import connection_refused


async def test_a_mock_backend_process_is_started_until_it_listens_and_killed_on_close(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        proc = await spawner.python_module("backend", "fdrouter.testing.mock_backend", "--port", "0")
        async with aiohttp.ClientSession() as http, http.get(proc.url + "/health") as resp:
            assert resp.status == 200
        assert proc.returncode is None and proc.port > 0
    finally:
        await spawner.close()
    assert proc.returncode is not None and not spawner.procs


async def test_a_process_that_exits_before_listening_is_an_error_with_its_log(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        with pytest.raises(RuntimeError, match=r"exited with code 3; its log:\nboom"):
            await spawner.start("bad", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    finally:
        await spawner.close()


async def test_a_silent_process_is_killed_after_the_timeout(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="printed no 'listening on URL' within 0.5s"):
            await spawner.start("silent", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
        assert await spawner.procs[0].wait(10) != 0
    finally:
        await spawner.close()


async def test_stop_terminates_gracefully_and_returns_the_exit_code(tmp_path):
    spawner = Spawner(tmp_path)
    try:
        proc = await spawner.python_module("backend", "fdrouter.testing.mock_backend", "--port", str(spawner.hold_port()))
        assert proc.stop() == 0  # the mock backend exits 0 on SIGTERM
    finally:
        await spawner.close()


async def test_backend_and_router_processes_listen_on_held_ports_and_work_together(tmp_path):
    async with Spawner(tmp_path) as spawn:
        backend = await spawn.backend("--output-tokens", "2")
        router = await spawn.router("--worker-urls", backend.url)
        async with aiohttp.ClientSession() as http, http.post(router.url + "/v1/completions", json={"prompt": "hi"}) as resp:
            assert (await resp.json())["usage"]["completion_tokens"] == 2
        backend.kill()
        assert await backend.wait(10) == -signal.SIGKILL
        assert connection_refused(backend.port)  # still held: nothing else can answer there
        assert "INFO" not in router.log_text()  # warnings and worse only, unless asked
    assert backend.returncode is not None and router.returncode is not None and not spawn.procs
