"""Registration bodies and PD request shaping (pure functions)."""

from __future__ import annotations

import pytest

from fdrouter.errors import BadRequest
from fdrouter.instances import InstanceInfo, Role
from fdrouter.pd import disaggregate_info, pd_request, transfer_protocol


def _info(**kw):
    return InstanceInfo.from_dict({"role": "prefill", "host_ip": "10.0.0.1", "port": 8000, **kw})


def test_info_normalises_like_fastdeploy():
    info = _info(role="Decode", port="8001", rdma_ports=[7000, "7001"], device_ids=[0, 1], tp_size="2",
                 transfer_protocol=["RDMA"])
    assert info.role is Role.DECODE and info.port == 8001 and info.tp_size == 2
    d = info.to_fastdeploy_dict()
    assert d["role"] == "DECODE" and d["port"] == "8001"
    assert d["rdma_ports"] == ["7000", "7001"] and d["device_ids"] == ["0", "1"]
    assert d["transfer_protocol"] == ["rdma"]


def test_same_host_and_port_is_the_same_instance():
    assert _info().key == _info(role="decode", metrics_port=9).key


@pytest.mark.parametrize("host", ["evil.com/path", "http://x", "a b", "user@host", "x:80", "", "../"])
def test_hosts_that_could_change_the_upstream_url_are_rejected(host):
    with pytest.raises(BadRequest, match="host_ip"):
        _info(host_ip=host)


def test_ipv6_hosts_are_bracketed_in_urls():
    assert _info(host_ip="::1").url == "http://[::1]:8000"


def test_transfer_protocol_is_ipc_only_on_one_host_with_ipc_on_both_sides():
    p = _info(transfer_protocol=["ipc", "rdma"])
    assert transfer_protocol(p, _info(role="decode", port=1, transfer_protocol=["ipc"])) == "ipc"
    assert transfer_protocol(p, _info(role="decode", port=1, transfer_protocol=["rdma"])) == "rdma"
    assert transfer_protocol(p, _info(role="decode", host_ip="10.0.0.2", transfer_protocol=["ipc"])) == "rdma"


def test_disaggregate_info_has_fastdeploys_keys():
    p = _info(transfer_protocol=["rdma"])
    d = _info(role="decode", host_ip="10.0.0.2", connector_port=9100, rdma_ports=[7000])
    info = disaggregate_info(p, d)
    assert set(info) == {"prefill", "decode", "role", "cache_info", "transfer_protocol"}
    assert info["cache_info"] == {"rdma": {"ip": "10.0.0.2", "port": "9100", "rdma_port": ["7000"]}}


def test_pd_request_adds_request_id_and_leaves_the_client_body_alone():
    body = {"messages": [], "stream": True}
    out = pd_request(body, _info(), _info(role="decode", port=1))
    assert "disaggregate_info" not in body and "request_id" not in body
    assert out["stream"] is True and len(out["request_id"]) == 36


def test_the_heartbeat_fields_are_kept_and_the_info_stays_hashable():
    body = {"role": "prefill", "host_ip": "10.0.0.1", "port": 8000, "version": "v2", "is_paused": True,
            "connected_decodes": [{"host_ip": "10.0.0.2", "port": "8001"}]}
    info = InstanceInfo.from_dict(body)
    assert (info.version, info.is_paused, info.connected_decodes) == ("v2", True, ({"host_ip": "10.0.0.2",
                                                                                   "port": "8001"},))
    assert hash(info) == hash(InstanceInfo.from_dict({**body, "connected_decodes": []}))
    assert "version" not in info.to_fastdeploy_dict()  # disaggregate_info stays as it was
    assert info.to_fastdeploy_dict(version=True)["version"] == "v2"
    assert InstanceInfo.from_dict({**body, "version": None, "is_paused": None}).is_paused is False


def test_a_registration_round_trips_through_its_register_dict_extras_included():
    body = {"role": "prefill", "host_ip": "10.0.0.5", "port": "8000", "metrics_port": 8001, "connector_port": 8002,
            "engine_worker_queue_port": 8003, "transfer_protocol": ["ipc", "rdma"], "rdma_ports": [7000, "7001"],
            "device_ids": [0, 1], "tp_size": 2, "version": "v2", "is_paused": True,
            "connected_decodes": [{"host_ip": "10.0.0.6", "port": "8000"}], "engine_extra": {"x": 1}}
    info = InstanceInfo.from_dict(body)
    again = InstanceInfo.from_dict(info.to_register_dict())
    assert again == info and again.extra == {"engine_extra": {"x": 1}}
    assert again.connected_decodes == info.connected_decodes
