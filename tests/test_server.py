"""The HTTP API: registration, introspection endpoints and every error status."""

from __future__ import annotations

import pytest

from fdrouter.testing import MockBehavior

from .conftest import wait_until


def _is_openai_error(body: dict) -> bool:
    error = body.get("error")
    return isinstance(error, dict) and {"message", "type", "code"} <= set(error)


async def test_register_is_idempotent_and_listed(cluster):
    c = await cluster(mixed=1)
    resp = await c.register(c.backends[0])
    assert resp.status == 200
    async with c.http.get(c.url + "/registered") as resp:
        instances = (await resp.json())["instances"]
    assert len(instances) == 1
    assert instances[0]["url"] == c.backends[0].url
    assert instances[0]["role"] == "mixed" and instances[0]["health"] == "healthy"
    assert instances[0]["in_flight_requests"] == 0
    async with c.http.get(c.url + "/registered_number") as resp:
        assert await resp.json() == {"mixed": 1, "prefill": 0, "decode": 0}


async def test_register_accepts_string_ports_and_any_case_role(router_factory, mock_backend_factory, http):
    backend = await mock_backend_factory()
    server = await router_factory()
    body = backend.register_info(role="MiXeD", port=str(backend.port), device_ids=["0", 1], rdma_ports="7000")
    async with http.post(server.url + "/register", json=body) as resp:
        assert resp.status == 200, await resp.text()
        info = (await resp.json())["instance"]["info"]
    assert info["port"] == str(backend.port) and info["device_ids"] == ["0", "1"] and info["rdma_ports"] == ["7000"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": None}, "role"),
        ({"role": "leader"}, "role"),
        ({"host_ip": None}, "host_ip"),
        ({"host_ip": "http://evil.example/x"}, "host_ip"),
        ({"host_ip": "10.0.0.1/admin"}, "host_ip"),
        ({"port": "80a"}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"transfer_protocol": ["tcp"]}, "transfer_protocol"),
        ({"device_ids": [{"x": 1}]}, "device_ids"),
        ({"tp_size": 0}, "tp_size"),
        ({"metrics_port": -1}, "metrics_port"),
    ],
)
async def test_register_rejects_invalid_fields_naming_the_field(router_factory, mock_backend_factory, http,
                                                               change, field):
    backend = await mock_backend_factory()
    server = await router_factory()
    body = {**backend.register_info(), **change}
    if change.get(field, 0) is None:
        del body[field]
    async with http.post(server.url + "/register", json=body) as resp:
        assert resp.status == 400
        payload = await resp.json()
    assert _is_openai_error(payload)
    assert field in payload["error"]["message"]
    assert server.router.registry.all() == []


async def test_register_rejects_role_that_does_not_fit_the_mode(router_factory, mock_backend_factory, http):
    prefill = await mock_backend_factory(role="prefill")
    mixed = await mock_backend_factory(role="mixed")
    mixed_router = await router_factory()
    pd_router = await router_factory(splitwise=True)
    async with http.post(mixed_router.url + "/register", json=prefill.register_info()) as resp:
        assert resp.status == 400 and "splitwise" in (await resp.json())["error"]["message"]
    async with http.post(pd_router.url + "/register", json=mixed.register_info()) as resp:
        assert resp.status == 400 and "mixed" in (await resp.json())["error"]["message"]


async def test_register_probes_health_before_accepting(router_factory, mock_backend_factory, http):
    backend = await mock_backend_factory(behavior=MockBehavior(health_status=503))
    server = await router_factory()
    async with http.post(server.url + "/register", json=backend.register_info()) as resp:
        assert resp.status == 503
        assert _is_openai_error(await resp.json())
    assert backend.health_checks == 1
    assert server.router.registry.all() == []


async def test_deregister_by_host_and_port_removes_the_instance(cluster):
    c = await cluster(mixed=1)
    b = c.backends[0]
    async with c.http.post(c.url + "/deregister", json={"host_ip": b.host, "port": b.port}) as resp:
        assert resp.status == 200
    async with c.http.get(c.url + "/registered_number") as resp:
        assert (await resp.json())["mixed"] == 0
    async with c.http.post(c.url + "/deregister", json={"host_ip": b.host, "port": b.port}) as resp:
        assert resp.status == 404
    status, body = await c.chat()
    assert status == 503 and body["error"]["code"] == "no_healthy_instance"


async def test_abort_requests_answers_at_once_and_reaches_every_instance(cluster, mock_backend_factory):
    c = await cluster(mixed=2)
    await c.backends[1].close()  # one instance is down: the abort still answers 200
    async with c.http.post(c.url + "/v1/abort_requests", json={"req_ids": ["a", "b"]}) as resp:
        assert resp.status == 200
        assert (await resp.json())["instances"] == 2
    assert await wait_until(lambda: c.backends[0].aborts == [{"req_ids": ["a", "b"]}])


@pytest.mark.parametrize("body", [{}, {"req_ids": "a"}, {"abort_all": "yes"}, {"req_ids": [1]}])
async def test_abort_requests_rejects_bad_bodies(cluster, body):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/abort_requests", json=body) as resp:
        assert resp.status == 400
        assert _is_openai_error(await resp.json())


async def test_health_and_health_generate(cluster):
    # no background health round may add a check (or a failure) of its own to the counts below
    c = await cluster(mixed=1, health_check_interval_secs=3600)
    async with c.http.get(c.url + "/health") as resp:
        assert resp.status == 200
    async with c.http.get(c.url + "/health_generate") as resp:
        assert resp.status == 200
    c.backends[0].behavior.health_status = 500
    before = c.backends[0].health_checks
    async with c.http.get(c.url + "/health_generate") as resp:
        # one failed check is not yet unhealthy (threshold 3): the endpoint really probed though
        assert resp.status == 200
    assert c.backends[0].health_checks == before + 1
    for _ in range(2):
        async with c.http.get(c.url + "/health_generate") as resp:
            status, body = resp.status, await resp.json()
    assert status == 503
    assert "mixed" in body["error"]["message"]


async def test_models_are_forwarded_to_a_healthy_instance(cluster):
    c = await cluster(mixed=1)
    async with c.http.get(c.url + "/v1/models") as resp:
        assert resp.status == 200
        assert (await resp.json())["data"][0]["id"] == "mock-model"


async def test_models_without_instances_is_503(router_factory, http):
    server = await router_factory()
    async with http.get(server.url + "/v1/models") as resp:
        assert resp.status == 503
        assert _is_openai_error(await resp.json())


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": "hi"}', "messages"),
        (b'{"messages": [{"content": "x"}]}', "messages[0]"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "model": 3}', "model"),
    ],
)
async def test_bad_chat_bodies_get_400_naming_the_problem(cluster, raw, needle):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/chat/completions", data=raw,
                           headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert _is_openai_error(body) and needle in body["error"]["message"]
    assert c.backends[0].requests_total == 0


async def test_completions_without_prompt_is_400(cluster):
    c = await cluster(mixed=1)
    async with c.http.post(c.url + "/v1/completions", json={"model": "m"}) as resp:
        assert resp.status == 400
        assert "prompt" in (await resp.json())["error"]["message"]


async def test_oversized_body_is_413(router_factory, http):
    server = await router_factory(max_body_bytes=4096)
    async with http.post(server.url + "/v1/chat/completions", data=b"x" * 10_000) as resp:
        assert resp.status == 413
        body = await resp.json()
    assert _is_openai_error(body) and "4096" in body["error"]["message"]


async def test_unknown_path_is_404_and_wrong_method_405(router_factory, http):
    server = await router_factory()
    async with http.get(server.url + "/v2/nothing") as resp:
        assert resp.status == 404 and _is_openai_error(await resp.json())
    async with http.get(server.url + "/v1/chat/completions") as resp:
        assert resp.status == 405 and _is_openai_error(await resp.json())


async def test_no_instances_is_503(router_factory, http):
    server = await router_factory()
    async with http.post(server.url + "/v1/chat/completions",
                         json={"messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "no_healthy_instance"


async def test_api_key_is_required_when_configured(cluster):
    c = await cluster(mixed=1, api_key="sekret")
    payload = {"messages": [{"role": "user", "content": "x"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
        async with c.http.post(c.url + "/v1/chat/completions", json=payload, headers=headers) as resp:
            assert resp.status == 401
            assert _is_openai_error(await resp.json())
    async with c.http.post(c.url + "/v1/chat/completions", json=payload,
                           headers={"Authorization": "Bearer sekret"}) as resp:
        assert resp.status == 200
    assert c.backends[0].requests_total == 1
