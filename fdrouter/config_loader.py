"""Turning files and strings into settings: router YAML files, instance files, flag values.

``config.py`` declares the settings (``RouterConfig``, ``SETTINGS``); this module reads them:

- ``read_config_file``: a router YAML file, fdrouter's keys and FastDeploy Go router's (what
  those map to is ``fastdeploy_config.py``'s table), into ``RouterConfig`` field values;
- ``load_instances_file``: ``instances:``, a list of ``/register`` bodies (FastDeploy's
  ``register.yaml`` too), and ``parse_worker_urls``: ``--worker-urls``;
- ``coerce``: one YAML or flag value checked against its field's type.

Every problem is a ``ConfigError`` naming the file, key or flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import FIELD_TYPES, ConfigError, FrozenOptions, yaml_keys
from .errors import BadRequest
from .instances import InstanceInfo


def coerce(name: str, value: Any, where: str) -> Any:
    """Check a YAML (or flag) value against the field's type; YAML gives ints, floats, bools, strings."""
    kind = FIELD_TYPES[name]
    if kind.startswith("Mapping"):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping of option names to values, got {value!r}")
        return FrozenOptions(value)
    if value is None and "None" in kind:
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("int", "float") and isinstance(value, str):
        value = _number(value)  # FastDeploy's files quote numbers: port: "8080"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if name == "workers" and type(value) is int:
        value = str(value)  # workers: 4 in YAML, as well as workers: auto
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _number(text: str) -> Any:
    """A quoted number as a number; anything else unchanged (the type check then names it)."""
    stripped = text.strip()
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            continue
    return text


def _read_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


@dataclass
class ConfigFile:
    """What a router YAML file says: settings, and what its FastDeploy Go router keys map to."""

    values: dict[str, Any] = field(default_factory=dict)
    """RouterConfig field values."""
    soft_options: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """Policy options from Go router keys: option -> (YAML key, value); applied to the policies that take them."""
    warnings: list[str] = field(default_factory=list)
    """One line per key accepted but not used, saying why (logged at start-up)."""
    register_path: Path | None = None
    """``manager.register-path``: a register.yaml of static instances."""


def read_config_file(path: str | Path) -> ConfigFile:
    """Read a router YAML file: fdrouter's keys and FastDeploy Go router's; any other key is an error."""
    from .fastdeploy_config import GO_ROUTER_KEYS, Ignored, SoftOption

    data = _read_yaml(path)
    out = ConfigFile()
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (server, manager, scheduler ...)")
    keys = yaml_keys()
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        for key, value in body.items():
            where = f"{path}: {section}.{key}"
            name = keys.get((str(section), str(key)))
            if name is not None:
                out.values[name] = coerce(name, value, where)
                continue
            spec = GO_ROUTER_KEYS.get((str(section), str(key)))
            if spec is None:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            if isinstance(spec, Ignored):
                out.warnings.append(f"{section}.{key}: accepted and not used: {spec.why}")
            elif isinstance(spec, SoftOption):
                if isinstance(value, str):
                    value = _number(value)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{where}: expected a number, got {value!r}")
                for option, convert in spec.options:
                    out.soft_options[option] = (f"{section}.{key}", convert(value))
            else:  # manager.register-path
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"{where}: expected a file path, got {value!r}")
                out.register_path = _beside(Path(path), value.strip())
    return out


def _beside(config_path: Path, target: str) -> Path:
    """A path from a config file: as given if it exists from here, else next to the config file."""
    given = Path(target)
    if given.is_absolute() or given.exists():
        return given
    return config_path.parent / given


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a router YAML file into RouterConfig field values (``read_config_file`` has the rest)."""
    return read_config_file(path).values


def load_instances_file(path: str | Path) -> tuple[InstanceInfo, ...]:
    """Read ``instances:`` (a list of /register bodies) from a YAML file."""
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise ConfigError(f"{path}: expected a mapping with a list under 'instances:'")
    out = []
    for i, body in enumerate(data["instances"]):
        if isinstance(body, dict) and isinstance(body.get("host_ip"), str):
            # FastDeploy's register.yaml may write the host as a URL; the Go router strips the scheme
            body = {**body, "host_ip": body["host_ip"].strip().removeprefix("http://").removeprefix("https://")}
        if isinstance(body, dict) and type(body.get("version")) in (int, float):
            body = {**body, "version": str(body["version"])}  # YAML reads "version: 2.6" as a number
        try:
            out.append(InstanceInfo.from_dict(body))
        except BadRequest as exc:
            raise ConfigError(f"{path}: instances[{i}]: {exc.message}") from None
    return tuple(out)


def parse_worker_urls(urls: list[str] | tuple[str, ...]) -> tuple[InstanceInfo, ...]:
    """Mixed instances from ``--worker-urls``."""
    out = []
    for url in urls:
        try:
            out.append(InstanceInfo.from_url(url))
        except BadRequest as exc:
            raise ConfigError(f"--worker-urls: {exc.message}") from None
    return tuple(out)


__all__ = [
    "ConfigFile", "coerce", "load_config_file", "load_instances_file", "parse_worker_urls", "read_config_file",
]
