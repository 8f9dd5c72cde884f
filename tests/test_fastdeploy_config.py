"""FastDeploy's own configuration files run unchanged: every key honoured or warned about once."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from fdrouter.cli import build_config, build_parser
from fdrouter.config import ConfigError
from fdrouter.instances import Role
from fdrouter.testing.processes import Spawner

DATA = Path(__file__).parent / "data" / "fastdeploy"
EXAMPLE = DATA / "config.example.yaml"


def _build(*argv: str):
    return build_config(build_parser().parse_args(["serve", *argv]))


def _layout(tmp_path: Path, register: dict | None = None) -> Path:
    """FastDeploy's layout: config.yaml, with register-path config/register.yaml next to it."""
    config = tmp_path / "config.yaml"
    shutil.copy(EXAMPLE, config)
    (tmp_path / "config").mkdir()
    if register is None:
        shutil.copy(DATA / "register.example.yaml", tmp_path / "config" / "register.yaml")
    else:
        (tmp_path / "config" / "register.yaml").write_text(yaml.safe_dump(register))
    return config


def test_every_key_of_the_example_is_honoured_with_the_go_routers_meaning_or_warned_about(tmp_path):
    config, warnings = _build("--config", str(_layout(tmp_path)))
    assert config.port == 8080 and config.host == "0.0.0.0" and config.splitwise  # port: "8080" is quoted
    assert (config.policy, config.prefill_policy, config.decode_policy) == ("power_of_two", "cache_aware",
                                                                            "request_num")
    assert (config.health_failure_threshold, config.health_success_threshold) == (3, 2)
    assert config.health_check_timeout_secs == 5 and config.health_check_endpoint == "/health"
    assert config.stats_interval_secs == 5
    assert (config.log_level, config.log_output, config.log_max_age_days, config.log_max_total_size_mb,
            config.log_cleanup_interval_secs) == ("info", "file", 7, 500, 3600)
    # the Go router's cache-aware thresholds, in cache_aware's terms: 0.2 relative is max > 1.25 * min
    assert dict(config.policy_options) == {"eviction_interval_secs": 1800.0, "balance_abs_threshold": 1,
                                           "balance_rel_threshold": 1.25}
    assert [(i.role, i.host_ip, i.port) for i in config.instances] == [
        (Role.PREFILL, "127.0.0.1", 8097), (Role.DECODE, "127.0.0.1", 8197)]  # from register-path
    text = "\n".join(warnings)
    for key in ("server.mode", "scheduler.eviction-interval-secs", "scheduler.hit-ratio-weight",
                "scheduler.load-balance-weight", "scheduler.cache-block-size", "scheduler.waiting-weight"):
        assert sum(line.startswith(key + ":") for line in warnings) == 1, (key, text)
    assert "use the policy fd_cache_aware" in text


def test_fastdeploys_cache_aware_scoring_is_one_setting_away(tmp_path):
    config, warnings = _build("--config", str(_layout(tmp_path)), "--prefill-policy", "fd_cache_aware")
    options = dict(config.options_for("fd_cache_aware"))
    assert options == {"hit_ratio_weight": 1.0, "load_balance_weight": 0.05, "cache_block_size": 4,
                       "balance_abs_threshold": 1, "balance_rel_threshold": 1.25, "eviction_duration_secs": 1800.0}
    assert not any(line.startswith("scheduler.hit-ratio-weight") for line in warnings)


def test_options_set_explicitly_win_over_the_go_router_keys(tmp_path):
    config, _ = _build("--config", str(_layout(tmp_path)), "--policy-option", "balance_abs_threshold=32")
    assert config.policy_options["balance_abs_threshold"] == 32


def test_a_go_router_key_with_a_wrong_value_is_still_an_error_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("scheduler:\n  hit-ratio-weight: heavy\n")
    with pytest.raises(ConfigError, match="scheduler.hit-ratio-weight"):
        _build("--config", str(path))


async def test_a_router_starts_from_the_example_and_serves_a_pd_request(tmp_path, mock_backend_factory):
    prefill = await mock_backend_factory(role="prefill")
    decode = await mock_backend_factory(role="decode")
    register = yaml.safe_load((DATA / "register.example.yaml").read_text())
    register["instances"][0]["port"] = str(prefill.port)  # quoted, as FastDeploy writes it
    register["instances"][1]["port"] = decode.port
    config = _layout(tmp_path, register)
    spawner = Spawner(tmp_path, env={})
    try:
        # the file unchanged; only the port is taken from the command line (flags override files)
        code = ("import os, sys; os.chdir(sys.argv[1]); from fdrouter.cli import main; "
                "sys.exit(main(['serve', '--config', 'config.yaml', '--port', '0']))")
        router = await spawner.start("router", [sys.executable, "-c", code, str(config.parent)])
        async with aiohttp.ClientSession() as http:
            body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
            async with http.post(router.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
        assert prefill.requests_total == 1 and decode.requests_total == 1
        log_text = (tmp_path / "logs" / "router.log").read_text()  # log.output: file
        assert log_text.count("server.mode") == 1 and "fd_cache_aware" in log_text
    finally:
        await spawner.close()
