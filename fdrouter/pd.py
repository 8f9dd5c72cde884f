"""Splitwise (PD) request shaping: FastDeploy's ``disaggregate_info``. Pure functions."""

from __future__ import annotations

import uuid

from .instances import InstanceInfo


def transfer_protocol(prefill: InstanceInfo, decode: InstanceInfo) -> str:
    """``ipc`` when both are on one host and both support it (a local KV copy), else ``rdma``."""
    same_host = prefill.host_ip == decode.host_ip
    both_ipc = "ipc" in prefill.transfer_protocol and "ipc" in decode.transfer_protocol
    return "ipc" if same_host and both_ipc else "rdma"


def disaggregate_info(prefill: InstanceInfo, decode: InstanceInfo) -> dict:
    """The ``disaggregate_info`` FastDeploy's router adds to a PD request.

    Same keys as FastDeploy's router: both instances' info dicts, the role, the transfer
    protocol and the matching ``cache_info`` telling prefill where to send the KV cache.
    """
    protocol = transfer_protocol(prefill, decode)
    if protocol == "ipc":
        cache_info = {
            "ipc": {
                "ip": decode.host_ip,
                "port": str(decode.engine_worker_queue_port),
                "device_ids": list(decode.device_ids),
            }
        }
    else:
        cache_info = {
            "rdma": {
                "ip": decode.host_ip,
                "port": str(decode.connector_port),
                "rdma_port": list(decode.rdma_ports),
            }
        }
    return {
        "prefill": prefill.to_fastdeploy_dict(),
        "decode": decode.to_fastdeploy_dict(),
        "role": "decode",
        "cache_info": cache_info,
        "transfer_protocol": protocol,
    }


def pd_request(body: dict, prefill: InstanceInfo, decode: InstanceInfo, request_id: str | None = None) -> dict:
    """The request both legs get: the client's body plus disaggregate_info and a request_id.

    The body's own ``request_id`` wins, then the router's request id, then a new uuid.
    """
    out = dict(body)
    out["disaggregate_info"] = disaggregate_info(prefill, decode)
    if not out.get("request_id"):
        out["request_id"] = request_id or str(uuid.uuid4())
    return out


__all__ = ["disaggregate_info", "pd_request", "transfer_protocol"]
