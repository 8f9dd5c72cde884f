"""The two JSON backends (orjson, the json module) accept and refuse exactly the same bodies.

The json backend is what a base install (without the ``speed`` extra) runs; it is tested in a
child interpreter where orjson cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp
import pytest

from fdrouter.testing.processes import Spawner

DEEP = b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
CASES = {
    "nan": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "infinity": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}',
    "minus_infinity": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}',
    "overflow": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
    "deep_1000": DEEP,
    "deep_65": b'{"x": ' + b"[" * 64 + b"]" * 64 + b"}",
}
ACCEPTED = {
    "deep_64": b'{"x": ' + b"[" * 63 + b"]" * 63 + b"}",
    "many_flat_objects": b'{"messages": [' + b",".join([b'{"role": "user", "content": "x"}'] * 200) + b"]}",
}

_PROBE = """
import json, sys
if sys.argv[1] == "json":
    sys.modules["orjson"] = None  # as in an install without the speed extra
from fdrouter import jsonutil
from fdrouter.errors import BadRequest
from fdrouter.validate import parse_json_object
cases = json.loads(sys.stdin.read())
out = {"backend": jsonutil.BACKEND}
for name, text in cases.items():
    try:
        parse_json_object(text.encode())
        out[name] = "accepted"
    except BadRequest as exc:
        out[name] = "400: " + exc.message
def _strict(name):
    raise ValueError(name)
try:
    json.loads(jsonutil.dumps({"t": float("nan")}), parse_constant=_strict)  # orjson writes null
    out["dumps_nan"] = "standard JSON"
except (ValueError, TypeError):
    out["dumps_nan"] = "refused or non-standard"
print(json.dumps(out))
"""


def _outcomes(backend: str) -> dict:
    cases = {name: raw.decode() for name, raw in {**CASES, **ACCEPTED}.items()}
    out = subprocess.run([sys.executable, "-c", _PROBE, backend], input=json.dumps(cases),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("backend", ["orjson", "json"])
def test_both_backends_refuse_nan_infinity_overflow_and_deep_nesting_with_a_400_naming_it(backend):
    outcomes = _outcomes(backend)
    assert outcomes.pop("backend") == backend
    for name in CASES:
        assert outcomes[name].startswith("400: "), (name, outcomes[name])
    assert "deeper than 64" in outcomes["deep_1000"] and "deeper than 64" in outcomes["deep_65"]
    for name in ACCEPTED:
        assert outcomes[name] == "accepted", (name, outcomes[name])
    # nothing the router writes upstream is non-standard JSON: json refuses NaN, orjson writes null
    assert outcomes["dumps_nan"] == ("standard JSON" if backend == "orjson" else "refused or non-standard")


def test_the_two_backends_give_the_same_verdict_on_every_case():
    first, second = _outcomes("orjson"), _outcomes("json")
    first.pop("backend"), second.pop("backend")
    assert {k: v.startswith("400") for k, v in first.items()} == {k: v.startswith("400") for k, v in second.items()}


async def test_a_router_without_orjson_answers_a_deeply_nested_body_with_400_and_logs_no_traceback(tmp_path):
    spawner = Spawner(tmp_path)
    code = ("import sys; sys.modules['orjson'] = None\n"
            "from fdrouter.cli import main\n"
            "sys.exit(main(['serve', '--port', '0', '--splitwise', '--log-level', 'info']))\n")
    try:
        router = await spawner.start("router", [sys.executable, "-c", code])
        async with aiohttp.ClientSession() as http:
            for raw in (DEEP, CASES["nan"], CASES["overflow"]):
                async with http.post(router.url + "/v1/chat/completions", data=raw,
                                     headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 400, await resp.text()
                    assert (await resp.json())["error"]["type"] == "invalid_request_error"
        assert "Traceback" not in router.log_text()
    finally:
        await spawner.close()
