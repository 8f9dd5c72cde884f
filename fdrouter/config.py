"""One frozen configuration object, built once from CLI flags and YAML, then passed down.

Every setting is declared once, as a ``RouterConfig`` field made by ``setting(...)``: its
default, its YAML section (the key is the flag's name), its help text and its bounds. The
YAML key table (``yaml_keys()``), the ``fdrouter serve`` flags (``cli.py``) and the checks in
``__post_init__`` are all derived from those declarations, so they cannot drift apart.

YAML keys reuse FastDeploy's Go router names where they overlap (``server.port``,
``manager.health-failure-threshold``, ``scheduler.policy`` ...). Flags override the file.
Reading files and strings into these settings is ``config_loader.py``'s job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .instances import InstanceInfo, Role


class ConfigError(ValueError):
    """A configuration file or flag is invalid; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    """How one ``RouterConfig`` field is set from outside: YAML key, flag, help and bounds."""

    section: str | None
    """YAML section (``server``, ``manager`` ...); None: not settable from YAML or a flag."""
    key: str
    """YAML key within the section."""
    flag: str
    """Command-line flag: the field name, dashed (``--log-level`` for ``log.level``)."""
    help: str
    """One-line help; the default is appended by the CLI."""
    ge: float | None = None
    """Smallest allowed value (inclusive)."""
    gt: float | None = None
    """Values must be greater than this."""
    le: float | None = None
    """Largest allowed value (inclusive)."""
    choices: tuple[str, ...] = ()
    """Allowed values of a string setting (compared case-insensitively)."""
    env: str | None = None
    """Environment variable read when neither the file nor a flag sets it."""
    secret: bool = False
    """Never shown in help defaults or logs."""

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None; the message names the setting as its flag does."""
        name = self.flag[2:]
        if self.choices and isinstance(value, str) and value.lower() not in self.choices:
            return f"{name} must be {_one_of(self.choices)}, got {value!r}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        if self.ge is not None and self.le is not None and not self.ge <= value <= self.le:
            return f"{name} must be between {self.ge:g} and {self.le:g}"
        if self.ge is not None and value < self.ge:
            return f"{name} must be >= {self.ge:g}"
        if self.gt is not None and not value > self.gt:
            return f"{name} must be > {self.gt:g}"
        return None


def setting(default: Any = dataclasses.MISSING, section: str | None = None, help: str = "", *,
            key: str | None = None, factory: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A ``RouterConfig`` field with its ``Setting`` (``key`` defaults to the field name, dashed)."""
    meta = {"setting": (section, key, help, rules)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class FrozenOptions(Mapping[str, Any]):
    """An immutable, hashable mapping of policy options (lists inside become tuples)."""

    __slots__ = ("_items", "_hash")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        items = {str(k): _freeze(v) for k, v in (options or {}).items()}
        self._items = items
        self._hash = hash(tuple(sorted(items.items(), key=lambda kv: kv[0])))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"FrozenOptions({self._items!r})"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenOptions(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class RouterConfig:
    """Everything the router needs at start-up. Defaults are LLM-serving defaults; immutable and hashable."""

    # -- server ------------------------------------------------------------------------------
    host: str = setting("127.0.0.1", "server",
                        "bind address; loopback by default: exposing a router is a decision, not a default")
    port: int = setting(9000, "server", "bind port; 0 picks a free one (tests, notebooks)", ge=0, le=65535)
    splitwise: bool = setting(False, "server", "PD disaggregation: one prefill and one decode instance per request")
    workers: str = setting(
        "1", "server", "worker processes serving the port (SO_REUSEPORT), with routing state shared between "
        "them; auto = one per usable core")
    request_timeout_secs: float = setting(
        1800.0, "server", "total time for one upstream generation request (FastDeploy's router uses 1800 s)", gt=0)
    max_body_bytes: int = setting(32 * 1024 * 1024, "server", "largest accepted request body; larger ones get 413",
                                  ge=1024)
    api_key: str | None = setting(
        None, "server", "require 'Authorization: Bearer KEY' on inference endpoints", env="FDROUTER_API_KEY",
        secret=True)
    admin_api_key: str | None = setting(
        None, "server", "require 'Authorization: Bearer KEY' on /register, /deregister and /v1/abort_requests",
        env="FDROUTER_ADMIN_API_KEY", secret=True)
    max_instances: int = setting(
        1024, "server", "registered instances at most; more are refused (a flood must not exhaust memory)", ge=1)
    max_concurrent_requests: int = setting(
        0, "server", "generation requests served at once; 0 disables admission control", ge=0)
    queue_size: int = setting(
        100, "server", "requests that may wait for a slot beyond max-concurrent-requests before 429 "
        "(SGLang's router default)", ge=0)
    queue_timeout_secs: float = setting(60.0, "server", "longest wait for a slot before 429", gt=0)
    shutdown_grace_period_secs: float = setting(
        30.0, "server", "on SIGTERM/SIGINT, how long in-flight requests may run before they are cut", ge=0)
    client_header_timeout_secs: float = setting(
        30.0, "server", "time a client has from the first byte of a request head to its end, else 408 and "
        "the connection is closed (slowloris); 0 = off", ge=0)
    client_body_timeout_secs: float = setting(
        60.0, "server", "longest wait for the next piece of a request body, else 408 and the connection is "
        "closed (nginx's client_body_timeout); 0 = off", ge=0)
    client_keepalive_timeout_secs: float = setting(
        75.0, "server", "an idle client connection (no request in progress) is closed after this (nginx's "
        "keepalive_timeout); 0 = off", ge=0)
    max_response_bytes: int = setting(
        100 * 1024 * 1024, "upstream", "largest non-streamed answer the router buffers from an instance, else 502 "
        "(streams are relayed as they come, uncapped)", ge=1024)
    client_write_timeout_secs: float = setting(
        60.0, "server", "longest a write to a client may make no progress (a client that stopped reading) "
        "before its connection is aborted and the upstream released; 0 = off", ge=0)
    http_front: str = setting(
        "lean", "server", "what parses client requests: lean (the generation endpoints on a hand-written "
        "HTTP/1.1 protocol, everything else handed to aiohttp) or aiohttp (every endpoint)",
        choices=("lean", "aiohttp"))
    # -- manager: health --------------------------------------------------------------------
    health_failure_threshold: int = setting(
        3, "manager", "consecutive failed checks before an instance stops getting traffic", ge=1)
    health_success_threshold: int = setting(
        2, "manager", "consecutive good checks before an unhealthy instance is re-admitted", ge=1)
    health_check_timeout_secs: float = setting(
        5.0, "manager", "timeout of one health check or registration probe", gt=0)
    health_check_interval_secs: float = setting(5.0, "manager", "time between health rounds", gt=0)
    health_check_endpoint: str = setting("/health", "manager", "path probed on each instance")
    health_pool_size: int = setting(
        32, "manager", "connections of the separate control pool (health checks, probes, aborts)", ge=1)
    # -- scheduler: policies ------------------------------------------------------------------
    policy: str = setting("request_num", "scheduler", "routing policy in mixed mode")
    prefill_policy: str = setting("process_tokens", "scheduler", "policy choosing the prefill instance (splitwise)")
    decode_policy: str = setting("request_num", "scheduler", "policy choosing the decode instance (splitwise)")
    policy_options: Mapping[str, Any] = setting(
        section="scheduler", factory=FrozenOptions,
        help="keyword options for the policies (cache_threshold, session_header ...); each goes to every "
        "configured policy that accepts it, and one no policy accepts is an error")
    metrics_scrape_interval_secs: float = setting(
        1.0, "scheduler", "background /metrics scrape interval (only for policies that need it)", gt=0)
    kv_events_path: str = setting(
        "/kv_events", "scheduler", "path of the instances' KV-event stream (policies that need it: kv_events)")
    kv_events_idle_timeout_secs: float = setting(
        30.0, "scheduler", "a KV-event stream silent this long is dead and reopened (instances ping every few s)",
        gt=0)
    kv_events_retry_secs: float = setting(
        1.0, "scheduler", "KV-event streams: first reconnect delay (doubling to 30 s) and the period at which "
        "streams are matched to the registered, healthy instances", gt=0)
    stats_interval_secs: float = setting(
        0.0, "scheduler", "log a stats line (running requests per instance, cache hit rate seen in answers) "
        "this often; 0 = off (FastDeploy's Go router: 5)", ge=0)
    preempt_retry_count: int = setting(
        3, "scheduler", "splitwise: how often a request a decode instance preempted (finish_reason pd_reschedule) "
        "goes to a new prefill/decode pair, on from the tokens generated so far; 0 = the preempted answer passes "
        "through (FastDeploy's Python router: 3)", ge=0)
    preempt_retry_exclude_decode: bool = setting(
        False, "scheduler", "splitwise: never send a preempted request back to a decode instance that preempted it "
        "(unless no other one is healthy)")
    # -- upstream ------------------------------------------------------------------------------
    connect_timeout_secs: float = setting(10.0, "upstream", "time to open a TCP connection to an instance", gt=0)
    max_connections: int = setting(
        4096, "upstream", "generation pool size across all instances (aiohttp's default of 100 queues LLM traffic)",
        ge=1)
    max_connections_per_host: int = setting(
        0, "upstream", "per-instance cap on generation connections; 0 = no cap beyond max-connections", ge=0)
    keepalive_timeout_secs: float = setting(60.0, "upstream", "how long an idle generation connection is kept")
    first_byte_timeout_secs: float = setting(
        600.0, "upstream", "time from sending a request until the instance's answer headers arrive; 0 = off", ge=0)
    stream_idle_timeout_secs: float = setting(
        600.0, "upstream", "longest gap between two chunks of an answer; 0 = off", ge=0)
    retry_max_retries: int = setting(
        2, "upstream", "retries of a request that failed before any byte reached the client, each on another "
        "instance", ge=0)
    disable_retries: bool = setting(False, "upstream", "never retry (same as retry-max-retries 0)")
    retry_initial_backoff_secs: float = setting(
        0.05, "upstream", "first retry delay; doubles per retry, with full jitter", ge=0)
    retry_max_backoff_secs: float = setting(1.0, "upstream", "upper bound of one retry delay", ge=0)
    breaker_failure_threshold: int = setting(
        5, "upstream", "consecutive live-traffic failures that open an instance's circuit; 0 = no breaker "
        "(5/2/30 s are SGLang's router defaults)", ge=0)
    breaker_success_threshold: int = setting(
        2, "upstream", "consecutive successes in half-open that close the circuit again", ge=1)
    breaker_cooldown_secs: float = setting(
        30.0, "upstream", "time an open circuit waits before letting trial requests through", gt=0)
    # -- static instances (flags --worker-urls, --register-config; no YAML key) ---------------------
    instances: tuple[InstanceInfo, ...] = setting((), None, "static instances, probed at start-up")
    # -- log ---------------------------------------------------------------------------------
    log_level: str = setting("info", "log", "logging level", key="level",
                             choices=("debug", "info", "warning", "error"))
    log_format: str = setting("text", "log", "text, or json for one JSON object per line", key="format",
                              choices=("text", "json"))
    log_output: str = setting("stderr", "log", "where log lines go: stderr, or file (log-file, rotated)",
                              key="output", choices=("stderr", "stdout", "file"))
    log_file: str = setting("logs/router.log", "log", "the log file when log-output is file (FastDeploy's path)",
                            key="file")
    log_max_age_days: float = setting(7.0, "log", "rotated log files older than this are deleted", key="max-age-days",
                                      gt=0)
    log_max_total_size_mb: float = setting(
        500.0, "log", "the log file and its rotated copies take at most this much disk", key="max-total-size-mb", gt=0)
    log_cleanup_interval_secs: float = setting(
        3600.0, "log", "how often old log files are looked for", key="cleanup-interval-secs", gt=0)

    def __post_init__(self) -> None:
        if not isinstance(self.policy_options, FrozenOptions):
            object.__setattr__(self, "policy_options", FrozenOptions(self.policy_options))
        for name, spec in SETTINGS.items():
            problem = spec.check(getattr(self, name))
            if problem is not None:
                raise ConfigError(problem)
        cross = [
            (self.health_check_endpoint.startswith("/"), "health-check-endpoint must start with '/'"),
            (self.workers == "auto" or (self.workers.isascii() and self.workers.isdigit() and int(self.workers) >= 1),
             f"workers must be a number >= 1 or auto, got {self.workers!r}"),
            (self.kv_events_path.startswith("/"), "kv-events-path must start with '/'"),
            (self.retry_max_backoff_secs >= self.retry_initial_backoff_secs,
             "retry-max-backoff-secs must be >= retry-initial-backoff-secs"),
        ]
        for ok, message in cross:
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
    def worker_count(self) -> int:
        """How many worker processes ``workers`` asks for (auto: the usable cores)."""
        if self.workers == "auto":
            from .workers.supervisor import usable_cores

            return usable_cores()
        return int(self.workers)

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


def _settings() -> dict[str, Setting]:
    out = {}
    for f in dataclasses.fields(RouterConfig):
        section, key, help_text, rules = f.metadata["setting"]
        dashed = f.name.replace("_", "-")
        out[f.name] = Setting(section, key or dashed, f"--{dashed}", help_text, **rules)
    return out


SETTINGS: dict[str, Setting] = _settings()
"""RouterConfig field name -> its Setting, in declaration order."""

FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(RouterConfig)}
"""RouterConfig field name -> its annotation, as written (``"int"``, ``"str | None"`` ...)."""


def yaml_keys() -> dict[tuple[str, str], str]:
    """(section, key) -> RouterConfig field, for every setting that has a YAML key."""
    return {(s.section, s.key): name for name, s in SETTINGS.items() if s.section is not None}


def default_of(name: str) -> Any:
    """The default value of a RouterConfig field."""
    f = RouterConfig.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


__all__ = [
    "FIELD_TYPES", "SETTINGS", "ConfigError", "FrozenOptions", "RouterConfig", "Setting", "default_of", "setting",
    "yaml_keys",
]
