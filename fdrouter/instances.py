"""What an instance is: FastDeploy's ``/register`` body, validated into a frozen record.

FastDeploy model servers started with ``--router`` post this body unchanged, so field
names and the int-or-str leniency follow FastDeploy's ``router/utils.py`` ``InstanceInfo``.
A current FastDeploy engine (``engine/register_manager.py``) re-posts it every 5 s as a
heartbeat, with ``version`` (its model version), ``is_paused`` and ``connected_decodes`` (the
decode instances a prefill instance pre-connected to) added.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest


class Role(enum.Enum):
    """What an instance does: the whole request, or one half of a PD pair."""

    MIXED = "mixed"
    PREFILL = "prefill"
    DECODE = "decode"


# RFC 1123 host names: letters, digits and hyphens in dot-separated labels. Anything
# else (a scheme, a slash, a user@, a space) could change the upstream URL we build.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_ZONE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PROTOCOLS = ("ipc", "rdma")
_ROLE_NUMBERS = ("mixed", "prefill", "decode")  # FastDeploy's InstanceRole: MIXED=0, PREFILL=1, DECODE=2
_REQUIRED = ("role", "host_ip", "port")


def _port(name: str, value: Any, *, required: bool) -> int:
    """A TCP port given as int or decimal string; 0 means 'not set' for optional ports."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"field '{name}' must be a port number (int or numeric string), got {value!r}")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):  # str.isdigit() also takes '²', which int() refuses
        raise BadRequest(f"field '{name}' must be a port number, got {value!r}")
    port = int(text)
    low = 1 if required else 0
    if not low <= port <= 65535:
        raise BadRequest(f"field '{name}' must be between {low} and 65535, got {port}")
    return port


def _host(value: Any) -> str:
    """A bare host name or IP address: never a URL, so it cannot inject a scheme or path."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field 'host_ip' must be a non-empty host name or IP address, got {value!r}")
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # ip_address() takes any IPv6 zone id but '/' and '%'; in a URL or a Host header a
        # zone like '?', '#', '@' or CR/LF would change what is asked of whom
        scope = getattr(address, "scope_id", None)
        if scope is not None and not _ZONE.match(scope):
            raise BadRequest(f"field 'host_ip' has an IPv6 zone id that is not an interface name: {value!r}")
        return str(address)
    if not _HOSTNAME.match(host):
        raise BadRequest(f"field 'host_ip' must be a host name or IP address without scheme or path, got {value!r}")
    return host.lower()


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"field '{name}' must be a string, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"field '{name}' must be true or false, got {value!r}")
    return value


def _objects(name: str, value: Any) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest(f"field '{name}' must be a list of objects, got {value!r}")
    return tuple(value)


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    """A list of ids or ports, each int or str; stored as str as FastDeploy does."""
    if value is None:
        return ()
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise BadRequest(f"field '{name}' must be a list of ints or strings, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).strip():
            raise BadRequest(f"field '{name}' must contain only ints or non-empty strings, got {item!r}")
        out.append(str(item).strip())
    return tuple(out)


@dataclass(frozen=True)
class InstanceInfo:
    """A validated registration: who the instance is and how PD peers reach its KV cache."""

    role: Role
    host_ip: str
    port: int
    metrics_port: int = 0
    connector_port: int = 0
    engine_worker_queue_port: int = 0
    transfer_protocol: tuple[str, ...] = ()
    rdma_ports: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    tp_size: int = 1
    version: str | None = None
    """The model version the engine serves (FastDeploy's heartbeat); ``/decode_instances?version=`` filters on it."""
    is_paused: bool = False
    """The engine says it is paused: it gets no new requests until it says otherwise."""
    connected_decodes: tuple[dict, ...] = field(default=(), compare=False, hash=False)
    """The decode instances a prefill instance reports it pre-connected to (as ``/decode_instances`` listed them)."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, int]:
        """Identity in the registry: registering the same host and port twice is one instance."""
        return (self.host_ip, self.port)

    @property
    def url(self) -> str:
        """Base URL of the instance's HTTP server."""
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"http://{host}:{self.port}"

    @classmethod
    def from_dict(cls, body: Any) -> InstanceInfo:
        """Validate a ``/register`` body; every problem is a ``BadRequest`` naming the field."""
        if not isinstance(body, dict):
            raise BadRequest("registration body must be a JSON object")
        missing = [name for name in _REQUIRED if name not in body or body[name] in (None, "")]
        if missing:
            raise BadRequest(f"missing required field(s): {', '.join(repr(m) for m in missing)}")
        role_value = body["role"]
        if type(role_value) is int and 0 <= role_value < len(_ROLE_NUMBERS):
            role_value = _ROLE_NUMBERS[role_value]  # FastDeploy's Go router takes the enum's number too
        if not isinstance(role_value, str) or role_value.strip().lower() not in {r.value for r in Role}:
            raise BadRequest(f"field 'role' must be one of mixed, prefill, decode (any case), got {role_value!r}")
        protocols = _str_list("transfer_protocol", body.get("transfer_protocol"))
        bad = [p for p in protocols if p.lower() not in _PROTOCOLS]
        if bad:
            raise BadRequest(f"field 'transfer_protocol' entries must be 'ipc' or 'rdma', got {bad!r}")
        tp = body.get("tp_size", 1)
        tp_text = str(tp).strip()
        if isinstance(tp, bool) or not (tp_text.isascii() and tp_text.isdigit()) or int(tp_text) < 1:
            raise BadRequest(f"field 'tp_size' must be a positive integer, got {tp!r}")
        known = {
            "role", "host_ip", "port", "metrics_port", "connector_port", "engine_worker_queue_port",
            "transfer_protocol", "rdma_ports", "device_ids", "tp_size", "version", "is_paused", "connected_decodes",
        }
        return cls(
            role=Role(role_value.strip().lower()),
            host_ip=_host(body["host_ip"]),
            port=_port("port", body["port"], required=True),
            metrics_port=_port("metrics_port", body.get("metrics_port", 0) or 0, required=False),
            connector_port=_port("connector_port", body.get("connector_port", 0) or 0, required=False),
            engine_worker_queue_port=_port(
                "engine_worker_queue_port", body.get("engine_worker_queue_port", 0) or 0, required=False
            ),
            transfer_protocol=tuple(p.lower() for p in protocols),
            rdma_ports=_str_list("rdma_ports", body.get("rdma_ports")),
            device_ids=_str_list("device_ids", body.get("device_ids")),
            tp_size=int(str(tp).strip()),
            version=_optional_str("version", body.get("version")),
            is_paused=_flag("is_paused", body.get("is_paused")),
            connected_decodes=_objects("connected_decodes", body.get("connected_decodes")),
            extra={k: v for k, v in body.items() if k not in known},
        )

    @classmethod
    def from_url(cls, url: str, role: Role = Role.MIXED) -> InstanceInfo:
        """An instance given as ``http://host:port`` (``--worker-urls``)."""
        match = re.match(r"^(?:http://)?(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?$", url.strip())
        if not match:
            raise BadRequest(f"worker URL must look like http://HOST:PORT, got {url!r}")
        return cls.from_dict({"role": role.value, "host_ip": match.group(1), "port": match.group(2)})

    def to_register_dict(self) -> dict:
        """A ``/register`` body that ``from_dict`` turns back into this very record (extras included)."""
        return {
            **self.extra,
            "role": self.role.value,
            "host_ip": self.host_ip,
            "port": self.port,
            "metrics_port": self.metrics_port,
            "connector_port": self.connector_port,
            "engine_worker_queue_port": self.engine_worker_queue_port,
            "transfer_protocol": list(self.transfer_protocol),
            "rdma_ports": list(self.rdma_ports),
            "device_ids": list(self.device_ids),
            "tp_size": self.tp_size,
            "version": self.version,
            "is_paused": self.is_paused,
            "connected_decodes": list(self.connected_decodes),
        }

    def to_fastdeploy_dict(self, *, version: bool = False) -> dict:
        """FastDeploy's ``InstanceInfo.to_dict()`` shape, as put into ``disaggregate_info``; with
        ``version`` too, as ``GET /decode_instances`` lists it."""
        out = {
            "role": self.role.name,
            "host_ip": self.host_ip,
            "port": str(self.port),
            "metrics_port": str(self.metrics_port),
            "connector_port": str(self.connector_port),
            "engine_worker_queue_port": str(self.engine_worker_queue_port),
            "transfer_protocol": list(self.transfer_protocol),
            "rdma_ports": list(self.rdma_ports),
            "device_ids": list(self.device_ids),
            "tp_size": self.tp_size,
        }
        if version:
            out["version"] = self.version
        return out


__all__ = ["InstanceInfo", "Role"]
