"""The command line, run as a user would: help, bad flags, and a real serve process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import aiohttp

from fdrouter.cli import main, serve_flags
from fdrouter.testing import Spawner


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fdrouter", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_serve_command():
    result = _run("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout


def test_serve_help_documents_every_flag():
    result = _run("serve", "--help")
    assert result.returncode == 0
    flags = serve_flags() + ["--config", "--register-config", "--worker-urls", "--policy-option"]
    missing = [f for f in flags if f not in result.stdout]
    assert not missing


def test_bad_flag_value_gives_one_line_and_nonzero_exit():
    result = _run("serve", "--policy", "telepathy")
    assert result.returncode == 2
    assert "telepathy" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_file_gives_clear_error_without_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: [1]\n")
    result = _run("serve", "--config", str(path))
    assert result.returncode == 2
    assert "server.port" in result.stderr and "Traceback" not in result.stderr


def test_unparseable_number_is_an_argparse_error():
    result = _run("serve", "--port", "abc")
    assert result.returncode == 2 and "Traceback" not in result.stderr


async def test_serve_runs_routes_to_worker_urls_and_exits_cleanly_on_sigterm(mock_backend_factory, tmp_path):
    backend = await mock_backend_factory()
    async with Spawner(tmp_path) as spawn:  # port 0: it picks a free port and prints its URL
        router = await spawn.router("--port", "0", "--worker-urls", backend.url)
        first_line = router.log_text().splitlines()[0]
        assert re.fullmatch(r"fdrouter listening on http://127\.0\.0\.1:[1-9]\d*", first_line), first_line
        async with aiohttp.ClientSession() as session:
            async with session.post(router.url + "/v1/completions", json={"prompt": "hi"}) as resp:
                assert resp.status == 200
        assert backend.requests_total == 1
        router.signal(signal.SIGTERM)
        assert await router.wait(15) == 0


def test_port_in_use_is_a_clear_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _run("serve", "--port", str(port))
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "Traceback" not in result.stderr


def test_simulate_command_prints_the_summary_as_json(capsys):
    code = main(["simulate", "--policy", "cache_aware", "--workload", "shared-prefix", "--instances", "4",
                 "--requests", "400", "--rate", "20", "--seed", "3", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy"] == "cache_aware" and summary["requests"] == 400
    for key in ("ttft_p50", "ttft_p99", "e2e_p50", "throughput_rps", "cache_hit_rate", "load_imbalance"):
        assert isinstance(summary[key], float), key
    assert 0 < summary["cache_hit_rate"] <= 1


def test_simulate_with_an_unknown_workload_exits_2_naming_it(capsys):
    assert main(["simulate", "--workload", "telepathy", "--requests", "10"]) == 2
    assert "telepathy" in capsys.readouterr().err
