"""Configuration: YAML with FastDeploy Go router key names, flags over file, clear errors."""

from __future__ import annotations

import pytest

from fdrouter.cli import build_parser, config_from_args
from fdrouter.config import ConfigError, RouterConfig
from fdrouter.config_loader import load_instances_file
from fdrouter.instances import Role


def _config(argv: list[str]) -> RouterConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_defaults_bind_loopback_with_fastdeploy_health_thresholds():
    cfg = RouterConfig()
    assert cfg.host == "127.0.0.1"
    assert (cfg.health_failure_threshold, cfg.health_success_threshold) == (3, 2)
    assert cfg.max_connections > 100  # aiohttp's silent default cap is not an LLM default


def test_yaml_uses_go_router_key_names_and_flags_override(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(
        "server:\n  host: 0.0.0.0\n  port: 9100\n  splitwise: true\n"
        "manager:\n  health-failure-threshold: 5\n  health-success-threshold: 4\n"
        "  health-check-timeout-secs: 2\n  health-check-interval-secs: 7\n  health-check-endpoint: /healthz\n"
        "scheduler:\n  policy: round_robin\n  prefill-policy: request_num\n  decode-policy: random\n"
    )
    cfg = _config(["--config", str(path), "--port", "9200", "--health-failure-threshold", "6"])
    assert cfg.host == "0.0.0.0" and cfg.port == 9200 and cfg.splitwise
    assert cfg.health_failure_threshold == 6 and cfg.health_success_threshold == 4
    assert cfg.health_check_timeout_secs == 2.0 and cfg.health_check_interval_secs == 7.0
    assert cfg.health_check_endpoint == "/healthz"
    assert (cfg.policy, cfg.prefill_policy, cfg.decode_policy) == ("round_robin", "request_num", "random")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("server:\n  port: nine\n", "server.port"),
        ("server:\n  colour: blue\n", "server.colour"),
        ("- a\n- b\n", "top level"),
        ("server: [1, 2]\n", "section 'server'"),
        ("server: {port: 1\n", "invalid YAML"),
        ("scheduler:\n  policy: telepathy\n", "telepathy"),
        ("manager:\n  health-failure-threshold: 0\n", "health-failure-threshold"),
    ],
)
def test_bad_config_files_raise_one_clear_error(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        _config(["--config", str(path)])
    assert needle in str(info.value)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        _config(["--config", str(tmp_path / "nope.yaml")])


def test_register_config_lists_static_instances(tmp_path):
    path = tmp_path / "instances.yaml"
    path.write_text(
        "instances:\n"
        "  - {role: prefill, host_ip: 10.1.0.1, port: 8000, transfer_protocol: [rdma]}\n"
        "  - {role: DECODE, host_ip: 10.1.0.2, port: '8001'}\n"
    )
    infos = load_instances_file(path)
    assert [(i.role, i.host_ip, i.port) for i in infos] == [(Role.PREFILL, "10.1.0.1", 8000), (Role.DECODE, "10.1.0.2", 8001)]
    cfg = _config(["--splitwise", "--register-config", str(path)])
    assert len(cfg.instances) == 2


def test_register_config_errors_name_the_entry(tmp_path):
    path = tmp_path / "instances.yaml"
    path.write_text("instances:\n  - {role: mixed, host_ip: 'a b', port: 1}\n")
    with pytest.raises(ConfigError, match=r"instances\[0\].*host_ip"):
        load_instances_file(path)


def test_static_instance_role_must_fit_the_mode():
    with pytest.raises(ConfigError, match="role mixed, which does not fit splitwise mode"):
        _config(["--splitwise", "--worker-urls", "http://127.0.0.1:8000"])


def test_worker_urls_must_be_host_and_port():
    with pytest.raises(ConfigError, match="worker URL"):
        _config(["--worker-urls", "http://127.0.0.1/v1"])


def test_api_key_comes_from_the_environment_when_no_flag(monkeypatch):
    monkeypatch.setenv("FDROUTER_API_KEY", "from-env")
    assert _config([]).api_key == "from-env"
    assert _config(["--api-key", "flag"]).api_key == "flag"


def test_hardening_flags_reach_the_config():
    cfg = _config([
        "--disable-retries", "--retry-max-retries", "4", "--breaker-failure-threshold", "7",
        "--max-concurrent-requests", "64", "--queue-size", "8", "--queue-timeout-secs", "2.5",
        "--first-byte-timeout-secs", "30", "--stream-idle-timeout-secs", "15", "--max-instances", "9",
        "--shutdown-grace-period-secs", "12", "--log-format", "json", "--admin-api-key", "admin-secret",
    ])
    assert cfg.disable_retries and cfg.retry_max_retries == 4 and cfg.breaker_failure_threshold == 7
    assert (cfg.max_concurrent_requests, cfg.queue_size, cfg.queue_timeout_secs) == (64, 8, 2.5)
    assert (cfg.first_byte_timeout_secs, cfg.stream_idle_timeout_secs) == (30.0, 15.0)
    assert cfg.max_instances == 9 and cfg.shutdown_grace_period_secs == 12.0
    assert cfg.log_format == "json" and cfg.admin_api_key == "admin-secret"


def test_policy_options_come_from_yaml_and_repeatable_flags(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text("scheduler:\n  policy: cache_aware\n  policy-options:\n    cache_threshold: 0.4\n"
                    "    balance_abs_threshold: 8\n")
    cfg = _config(["--config", str(path), "--policy-option", "cache_threshold=0.6",
                   "--policy-option", "max_tree_size=1000"])
    assert cfg.policy_options == {"cache_threshold": 0.6, "balance_abs_threshold": 8, "max_tree_size": 1000}


def test_admin_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FDROUTER_ADMIN_API_KEY", "from-env-admin")
    assert _config([]).admin_api_key == "from-env-admin"


@pytest.mark.parametrize(("argv", "needle"), [
    (["--log-format", "xml"], "log-format"),
    (["--queue-timeout-secs", "0"], "queue-timeout-secs"),
    (["--retry-max-retries", "-1"], "retry-max-retries"),
    (["--policy", "round_robin", "--policy-option", "cache_threshold=0.5"], "cache_threshold"),
])
def test_bad_hardening_values_are_config_errors(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        _config(argv)


def test_every_setting_is_reachable_from_yaml_and_from_its_flag_with_the_same_meaning(tmp_path):
    from fdrouter.config import FIELD_TYPES, SETTINGS, default_of

    samples = {"int": 7, "float": 7.5, "bool": True, "str": "x", "str | None": "secret"}
    for name, spec in SETTINGS.items():
        kind = FIELD_TYPES[name]
        if spec.section is None or kind not in samples:
            continue
        value = samples[kind]
        if spec.choices:
            value = spec.choices[-1]
        elif name.endswith("policy"):
            value = "round_robin"
        elif name in ("health_check_endpoint", "kv_events_path"):
            value = "/x"
        elif name == "workers":
            value = "3"
        elif name in ("max_body_bytes", "max_response_bytes"):
            value = 4096
        elif name == "retry_initial_backoff_secs":
            value = 0.5  # must stay below retry-max-backoff-secs' default of 1
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"{spec.section}:\n  {spec.key}: {value if kind != 'bool' else 'true'}\n")
        from_yaml = getattr(_config(["--config", str(path)]), name)
        flag = [spec.flag] if kind == "bool" else [spec.flag, str(value)]
        from_flag = getattr(_config(flag), name)
        assert from_yaml == from_flag == value != default_of(name), name


def test_the_config_is_immutable_and_hashable_policy_options_included():
    a = RouterConfig(policy="cache_aware", policy_options={"cache_threshold": 0.5})
    b = RouterConfig(policy="cache_aware", policy_options={"cache_threshold": 0.5})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(TypeError):
        a.policy_options["cache_threshold"] = 0.9  # type: ignore[index]
    with pytest.raises(AttributeError):
        a.port = 1  # type: ignore[misc]
    assert a.options_for("cache_aware") == {"cache_threshold": 0.5}


def test_serve_help_gives_every_settings_help_text_and_default():
    from fdrouter.config import SETTINGS

    def squeeze(text: str) -> str:  # argparse re-wraps lines, also after hyphens
        return "".join(text.split())

    text = squeeze(build_parser()._subparsers._group_actions[0].choices["serve"].format_help())
    for spec in SETTINGS.values():
        if spec.section is not None and spec.key != "policy-options":
            assert squeeze(spec.help) in text, spec.flag
    assert squeeze("(default 9000)") in text and squeeze("(default: $FDROUTER_API_KEY, else none)") in text


def test_fastdeploys_preempt_retry_flags_and_their_yaml_keys(tmp_path):
    assert (RouterConfig().preempt_retry_count, RouterConfig().preempt_retry_exclude_decode) == (3, False)
    cfg = _config(["--splitwise", "--preempt-retry-count", "5", "--preempt-retry-exclude-decode"])
    assert (cfg.preempt_retry_count, cfg.preempt_retry_exclude_decode) == (5, True)
    path = tmp_path / "router.yaml"
    path.write_text("scheduler:\n  preempt-retry-count: 0\n  preempt-retry-exclude-decode: true\n")
    cfg = _config(["--config", str(path)])
    assert (cfg.preempt_retry_count, cfg.preempt_retry_exclude_decode) == (0, True)
    with pytest.raises(ConfigError, match="preempt-retry-count must be >= 0"):
        RouterConfig(preempt_retry_count=-1)


def test_a_static_instance_version_written_as_a_number_is_its_text(tmp_path):
    path = tmp_path / "instances.yaml"
    path.write_text("instances:\n  - {role: decode, host_ip: 10.1.0.2, port: 8001, version: 2.6, is_paused: true}\n")
    [info] = load_instances_file(path)
    assert (info.version, info.is_paused) == ("2.6", True)
