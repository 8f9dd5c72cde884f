"""One frozen configuration object, built once from CLI flags and YAML, then passed down.

YAML keys reuse FastDeploy's Go router names where they overlap (``server.port``,
``manager.health-failure-threshold``, ``scheduler.policy`` ...). Flags override the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import BadRequest
from .instances import InstanceInfo, Role


class ConfigError(ValueError):
    """A configuration file or flag is invalid; the message says which and why."""


@dataclass(frozen=True)
class RouterConfig:
    """Everything the router needs at start-up. Defaults are LLM-serving defaults."""

    host: str = "127.0.0.1"
    """Bind address. Loopback by default: exposing a router is a decision, not a default."""
    port: int = 9000
    """Bind port; 0 picks a free one (tests, notebooks)."""
    splitwise: bool = False
    """PD disaggregation: route each request to one prefill and one decode instance."""
    request_timeout_secs: float = 1800.0
    """Total time for one upstream generation request (FastDeploy's router uses 1800 s)."""
    connect_timeout_secs: float = 10.0
    """Time to open a TCP connection to an instance."""
    max_connections: int = 4096
    """Generation pool size across all instances (aiohttp's default of 100 queues LLM traffic)."""
    max_connections_per_host: int = 0
    """Per-instance cap on generation connections; 0 means no cap beyond max_connections."""
    keepalive_timeout_secs: float = 60.0
    """How long an idle generation connection is kept for reuse."""
    health_failure_threshold: int = 3
    """Consecutive failed checks before an instance stops getting traffic."""
    health_success_threshold: int = 2
    """Consecutive good checks before an unhealthy instance is re-admitted."""
    health_check_timeout_secs: float = 5.0
    """Timeout of one health check or registration probe."""
    health_check_interval_secs: float = 5.0
    """Time between health rounds."""
    health_check_endpoint: str = "/health"
    """Path probed on each instance."""
    health_pool_size: int = 32
    """Connections of the separate control pool (health checks, probes, aborts)."""
    policy: str = "request_num"
    """Policy for mixed mode."""
    prefill_policy: str = "process_tokens"
    """Policy choosing the prefill instance in splitwise mode."""
    decode_policy: str = "request_num"
    """Policy choosing the decode instance in splitwise mode."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest accepted request body; larger ones get 413."""
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword options for the policies (``cache_threshold``, ``session_header`` ...); each option
    goes to every configured policy that accepts it, and one no policy accepts is an error."""
    metrics_scrape_interval_secs: float = 1.0
    """How often instances' ``/metrics`` are scraped in the background (only for policies that need it)."""
    api_key: str | None = None
    """If set, inference endpoints require ``Authorization: Bearer <api_key>``."""
    admin_api_key: str | None = None
    """If set, /register, /deregister and /v1/abort_requests require ``Authorization: Bearer <admin_api_key>``."""
    max_instances: int = 1024
    """Registered instances at most; more registrations are refused (a flood must not exhaust memory)."""
    first_byte_timeout_secs: float = 600.0
    """Time from sending a request to an instance until its answer's headers arrive; 0 disables."""
    stream_idle_timeout_secs: float = 600.0
    """Longest gap between two chunks of an answer; 0 disables."""
    retry_max_retries: int = 2
    """Retries of a request that failed before any byte reached the client, each on another instance."""
    disable_retries: bool = False
    """Never retry (same as retry_max_retries = 0)."""
    retry_initial_backoff_secs: float = 0.05
    """First retry delay; doubles per retry, with full jitter."""
    retry_max_backoff_secs: float = 1.0
    """Upper bound of one retry delay."""
    breaker_failure_threshold: int = 5
    """Consecutive live-traffic failures that open an instance's circuit; 0 disables the breaker."""
    breaker_success_threshold: int = 2
    """Consecutive successes in half-open that close the circuit again."""
    breaker_cooldown_secs: float = 30.0
    """Time an open circuit waits before letting trial requests through (half-open).
    5 failures / 2 successes / 30 s are SGLang's router defaults (sgl-router circuit_breaker.rs)."""
    max_concurrent_requests: int = 0
    """Generation requests served at once; 0 disables admission control."""
    queue_size: int = 100
    """Requests that may wait for a slot when max_concurrent_requests is reached; beyond: 429.
    100 and 60 s are SGLang's router defaults (RouterArgs)."""
    queue_timeout_secs: float = 60.0
    """Longest wait for a slot before 429."""
    shutdown_grace_period_secs: float = 30.0
    """On SIGTERM/SIGINT, how long in-flight requests may run before they are cut."""
    instances: tuple[InstanceInfo, ...] = field(default=())
    """Static instances (``--worker-urls``, ``--register-config``), probed at start-up."""
    log_level: str = "info"
    """Logging level name."""
    log_format: str = "text"
    """``text`` or ``json`` (one JSON object per line)."""

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, "port must be between 0 and 65535"),
            (self.request_timeout_secs > 0, "request-timeout-secs must be > 0"),
            (self.connect_timeout_secs > 0, "connect-timeout-secs must be > 0"),
            (self.max_connections >= 1, "max-connections must be >= 1"),
            (self.max_connections_per_host >= 0, "max-connections-per-host must be >= 0"),
            (self.health_failure_threshold >= 1, "health-failure-threshold must be >= 1"),
            (self.health_success_threshold >= 1, "health-success-threshold must be >= 1"),
            (self.health_check_timeout_secs > 0, "health-check-timeout-secs must be > 0"),
            (self.health_check_interval_secs > 0, "health-check-interval-secs must be > 0"),
            (self.health_check_endpoint.startswith("/"), "health-check-endpoint must start with '/'"),
            (self.health_pool_size >= 1, "health-pool-size must be >= 1"),
            (self.max_body_bytes >= 1024, "max-body-bytes must be >= 1024"),
            (self.metrics_scrape_interval_secs > 0, "metrics-scrape-interval-secs must be > 0"),
            (self.max_instances >= 1, "max-instances must be >= 1"),
            (self.first_byte_timeout_secs >= 0, "first-byte-timeout-secs must be >= 0"),
            (self.stream_idle_timeout_secs >= 0, "stream-idle-timeout-secs must be >= 0"),
            (self.retry_max_retries >= 0, "retry-max-retries must be >= 0"),
            (self.retry_initial_backoff_secs >= 0, "retry-initial-backoff-secs must be >= 0"),
            (self.retry_max_backoff_secs >= self.retry_initial_backoff_secs,
             "retry-max-backoff-secs must be >= retry-initial-backoff-secs"),
            (self.breaker_failure_threshold >= 0, "breaker-failure-threshold must be >= 0"),
            (self.breaker_success_threshold >= 1, "breaker-success-threshold must be >= 1"),
            (self.breaker_cooldown_secs > 0, "breaker-cooldown-secs must be > 0"),
            (self.max_concurrent_requests >= 0, "max-concurrent-requests must be >= 0"),
            (self.queue_size >= 0, "queue-size must be >= 0"),
            (self.queue_timeout_secs > 0, "queue-timeout-secs must be > 0"),
            (self.shutdown_grace_period_secs >= 0, "shutdown-grace-period-secs must be >= 0"),
            (self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
             f"log-level must be debug, info, warning or error, got {self.log_level!r}"),
            (self.log_format in ("text", "json"), f"log-format must be text or json, got {self.log_format!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from .policies import available_policies  # late: policies import nothing of ours but errors

        for name in ("policy", "prefill_policy", "decode_policy"):
            value = getattr(self, name)
            if value not in available_policies():
                raise ConfigError(
                    f"{name.replace('_', '-')}: unknown policy {value!r}; choose from {', '.join(available_policies())}"
                )
        self._check_policy_options()
        for inst in self.instances:
            if self.splitwise == (inst.role is Role.MIXED):
                mode = "splitwise" if self.splitwise else "mixed"
                raise ConfigError(f"instance {inst.url} has role {inst.role.value}, which does not fit {mode} mode")

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The policies this configuration runs (one in mixed mode, prefill and decode in splitwise)."""
        return (self.prefill_policy, self.decode_policy) if self.splitwise else (self.policy,)

    def options_for(self, policy: str) -> dict[str, Any]:
        """The subset of ``policy_options`` that ``policy``'s constructor accepts."""
        from .policies import policy_options

        accepted = policy_options(policy)
        return {k: v for k, v in self.policy_options.items() if k in accepted}

    def _check_policy_options(self) -> None:
        from .policies import policy_options

        accepted: set[str] = set()
        for name in self.policy_names:
            accepted |= set(policy_options(name))
        unknown = sorted(set(self.policy_options) - accepted)
        if unknown:
            raise ConfigError(
                f"policy option(s) {', '.join(unknown)} not accepted by {' / '.join(self.policy_names)}; "
                f"accepted: {', '.join(sorted(accepted)) or 'none'}"
            )

    def replace(self, **changes: Any) -> RouterConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# YAML (section, key) -> RouterConfig field. Go router names first, ours after.
YAML_KEYS: dict[tuple[str, str], str] = {
    ("server", "host"): "host",
    ("server", "port"): "port",
    ("server", "splitwise"): "splitwise",
    ("server", "request-timeout-secs"): "request_timeout_secs",
    ("server", "max-body-bytes"): "max_body_bytes",
    ("server", "api-key"): "api_key",
    ("server", "admin-api-key"): "admin_api_key",
    ("server", "max-instances"): "max_instances",
    ("server", "max-concurrent-requests"): "max_concurrent_requests",
    ("server", "queue-size"): "queue_size",
    ("server", "queue-timeout-secs"): "queue_timeout_secs",
    ("server", "shutdown-grace-period-secs"): "shutdown_grace_period_secs",
    ("manager", "health-failure-threshold"): "health_failure_threshold",
    ("manager", "health-success-threshold"): "health_success_threshold",
    ("manager", "health-check-timeout-secs"): "health_check_timeout_secs",
    ("manager", "health-check-interval-secs"): "health_check_interval_secs",
    ("manager", "health-check-endpoint"): "health_check_endpoint",
    ("manager", "health-pool-size"): "health_pool_size",
    ("scheduler", "policy"): "policy",
    ("scheduler", "prefill-policy"): "prefill_policy",
    ("scheduler", "decode-policy"): "decode_policy",
    ("scheduler", "policy-options"): "policy_options",
    ("scheduler", "metrics-scrape-interval-secs"): "metrics_scrape_interval_secs",
    ("upstream", "connect-timeout-secs"): "connect_timeout_secs",
    ("upstream", "max-connections"): "max_connections",
    ("upstream", "max-connections-per-host"): "max_connections_per_host",
    ("upstream", "keepalive-timeout-secs"): "keepalive_timeout_secs",
    ("upstream", "first-byte-timeout-secs"): "first_byte_timeout_secs",
    ("upstream", "stream-idle-timeout-secs"): "stream_idle_timeout_secs",
    ("upstream", "retry-max-retries"): "retry_max_retries",
    ("upstream", "disable-retries"): "disable_retries",
    ("upstream", "retry-initial-backoff-secs"): "retry_initial_backoff_secs",
    ("upstream", "retry-max-backoff-secs"): "retry_max_backoff_secs",
    ("upstream", "breaker-failure-threshold"): "breaker_failure_threshold",
    ("upstream", "breaker-success-threshold"): "breaker_success_threshold",
    ("upstream", "breaker-cooldown-secs"): "breaker_cooldown_secs",
    ("log", "level"): "log_level",
    ("log", "format"): "log_format",
}

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RouterConfig)}


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check a YAML value against the field's type; YAML gives ints, floats, bools, strings."""
    kind = _FIELD_TYPES[name]
    if kind == "Mapping[str, Any]":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping of option names to values, got {value!r}")
        return dict(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _read_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a router YAML file into RouterConfig field values; unknown keys are errors."""
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (server, manager, scheduler ...)")
    values: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        for key, value in body.items():
            name = YAML_KEYS.get((str(section), str(key)))
            if name is None:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            values[name] = _coerce(name, value, f"{path}: {section}.{key}")
    return values


def load_instances_file(path: str | Path) -> tuple[InstanceInfo, ...]:
    """Read ``instances:`` (a list of /register bodies) from a YAML file."""
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise ConfigError(f"{path}: expected a mapping with a list under 'instances:'")
    out = []
    for i, body in enumerate(data["instances"]):
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
