"""``python -m fdrouter.testing.mock_backend``: the command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from fdrouter.sim.engine_model import EngineModel
from fdrouter.testing.mock_backend import _behavior, _parser, main

from .helpers import CHAT, chat_body

REPO_ROOT = Path(__file__).resolve().parents[2]

async def test_cli_prints_its_url_answers_health_and_exits_on_sigterm(session) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fdrouter.testing.mock_backend",
        "--port",
        "0",
        "--role",
        "decode",
        "--output-tokens",
        "3",
        "--loop",
        "asyncio",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"mock backend listening on (http://127\.0\.0\.1:(\d+)) role=decode\n", line)
        assert match, line
        url = match.group(1)
        async with session.get(url + "/health") as response:
            assert response.status == 200
        async with session.post(url + CHAT, json=chat_body()) as response:
            assert (await response.json())["usage"]["completion_tokens"] == 3
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
        assert await proc.stderr.read() == b""  # no tracebacks, no runpy double-import warning
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["--role", "verifier"],
        ["--port", "http"],
        ["--port", "70000"],
        ["--output-tokens", "-1"],
        ["--token-delay", "soon"],
        ["--bogus"],
        ["--max-batch", "4"],  # engine flags need --engine
        ["--engine", "--max-batch", "0"],
        ["--engine", "--prefill-per-token", "-1"],
        ["--engine", "--token-delay", "0.01"],  # two latency models at once
    ],
)
def test_cli_rejects_bad_flags_with_a_usage_error(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_cli_engine_flags_build_the_engine_model() -> None:
    parser = _parser()
    args = parser.parse_args(
        ["--engine", "--max-batch", "4", "--prefill-per-token", "0.001", "--decode-step", "0.02"]
    )
    behavior = _behavior(parser, args)
    assert behavior.engine == EngineModel(max_batch=4, prefill_per_token_s=0.001, decode_base_s=0.02)
    assert _behavior(parser, parser.parse_args([])).engine is None
    help_text = parser.format_help()
    for flag in ("--engine", "--max-batch", "--cache-blocks", "--prefill-per-token", "--decode-step"):
        assert flag in help_text
