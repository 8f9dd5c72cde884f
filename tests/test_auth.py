"""API keys: the inference key on inference endpoints, the admin key on state-changing ones."""

from __future__ import annotations

import logging

import pytest

from fdrouter.testing import MockBackend

API, ADMIN = "inference-key-123", "admin-key-456"

INFERENCE = [
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/completions", {"prompt": "hi"}),
    ("GET", "/v1/models", None),
]


def _auth(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def secured(router_factory, mock_backend_factory):
    backend: MockBackend = await mock_backend_factory()
    server = await router_factory(api_key=API, admin_api_key=ADMIN)
    return server, backend


@pytest.mark.parametrize(("method", "path", "body"), INFERENCE)
@pytest.mark.parametrize(("key", "allowed"), [(None, False), ("wrong-key-000", False), (ADMIN, False), (API, True)])
async def test_inference_endpoints_need_the_api_key(secured, http, method, path, body, key, allowed):
    server, backend = secured
    async with http.post(server.url + "/register", json=backend.register_info(), headers=_auth(ADMIN)) as resp:
        assert resp.status == 200
    async with http.request(method, server.url + path, json=body, headers=_auth(key)) as resp:
        payload = await resp.json()
        if allowed:
            assert resp.status == 200
        else:
            assert resp.status == 401
            assert payload["error"]["type"] == "authentication_error"
            assert "API key" in payload["error"]["message"]


@pytest.mark.parametrize("key", [None, "wrong-key-000", API])
async def test_register_deregister_and_abort_refuse_anything_but_the_admin_key(secured, http, key):
    server, backend = secured
    for path, body in (("/register", backend.register_info()),
                       ("/deregister", {"host_ip": "127.0.0.1", "port": backend.port}),
                       ("/v1/abort_requests", {"abort_all": True})):
        async with http.post(server.url + path, json=body, headers=_auth(key)) as resp:
            assert resp.status == 401, path
            assert "admin API key" in (await resp.json())["error"]["message"]
    assert server.router.registry.all() == []  # nothing was registered by a stranger


async def test_admin_key_registers_deregisters_and_aborts(secured, http):
    server, backend = secured
    async with http.post(server.url + "/register", json=backend.register_info(), headers=_auth(ADMIN)) as resp:
        assert resp.status == 200
    async with http.post(server.url + "/v1/abort_requests", json={"abort_all": True}, headers=_auth(ADMIN)) as resp:
        assert resp.status == 200
    async with http.post(server.url + "/deregister", json={"host_ip": "127.0.0.1", "port": backend.port},
                         headers=_auth(ADMIN)) as resp:
        assert resp.status == 200
    assert server.router.registry.all() == []


async def test_read_only_endpoints_stay_open(secured, http):
    server, _ = secured
    for path in ("/health", "/registered", "/registered_number", "/metrics"):
        async with http.get(server.url + path) as resp:
            assert resp.status == 200, path


async def test_keys_never_appear_in_the_log(router_factory, mock_backend_factory, http, caplog):
    caplog.set_level(logging.DEBUG, logger="fdrouter")
    backend = await mock_backend_factory()
    server = await router_factory(api_key=API, admin_api_key=ADMIN)
    async with http.post(server.url + "/register", json=backend.register_info(), headers=_auth(ADMIN)):
        pass
    async with http.post(server.url + "/register", json=backend.register_info(), headers=_auth("wrong-key-000")):
        pass
    async with http.post(server.url + "/v1/chat/completions", headers=_auth(API),
                         json={"messages": [{"role": "user", "content": "hi"}]}):
        pass
    assert caplog.records, "expected some log lines"
    assert API not in caplog.text and ADMIN not in caplog.text


async def test_exposed_router_without_keys_warns_once(caplog):
    from fdrouter.config import RouterConfig
    from fdrouter.server import _warn_if_exposed

    caplog.set_level(logging.WARNING, logger="fdrouter")
    _warn_if_exposed(RouterConfig(host="0.0.0.0"))
    _warn_if_exposed(RouterConfig(host="127.0.0.1"))
    _warn_if_exposed(RouterConfig(host="0.0.0.0", api_key=API, admin_api_key=ADMIN))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--admin-api-key" in warnings[0].getMessage() and "hijack" in warnings[0].getMessage()


async def test_registrations_beyond_max_instances_are_refused(router_factory, mock_backend_factory, http):
    a, b = await mock_backend_factory(), await mock_backend_factory()
    server = await router_factory(max_instances=1)
    async with http.post(server.url + "/register", json=a.register_info()) as resp:
        assert resp.status == 200
    async with http.post(server.url + "/register", json=a.register_info()) as resp:
        assert resp.status == 200  # re-registering an instance is not a new one
    async with http.post(server.url + "/register", json=b.register_info()) as resp:
        assert resp.status == 403
        body = await resp.json()
    assert "--max-instances" in body["error"]["message"]
    assert len(server.router.registry.all()) == 1
