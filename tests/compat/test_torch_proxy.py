"""compat.enable_torch_proxy: paddle.compat's torch proxy where it exists, a logged no-op where not."""

from __future__ import annotations

import importlib
import logging
import sys

import compat
from compat import profiles

# a scope no real module has: enabling the proxy for it changes nothing else in the process
SCOPE = {"compat_tests_no_such_module"}


def test_enable_torch_proxy_enables_paddles_proxy_and_returns_true_where_paddle_compat_exists(paddle):
    with profiles.using("cpu"):
        paddle_compat = importlib.import_module("paddle.compat")
        try:
            assert compat.enable_torch_proxy(scope=SCOPE, silent=True) is True
            assert paddle_compat.proxy.TORCH_PROXY_FINDER in sys.meta_path
        finally:
            paddle_compat.disable_torch_proxy()


def test_enable_torch_proxy_passes_its_arguments_through(paddle, monkeypatch):
    calls = []
    with profiles.using("cpu"):
        paddle_compat = importlib.import_module("paddle.compat")
        monkeypatch.setattr(paddle_compat, "enable_torch_proxy", lambda *a, **k: calls.append((a, k)))
        try:
            compat.reprobe()
            assert compat.enable_torch_proxy("positional", scope=SCOPE, silent=True) is True
        finally:
            monkeypatch.undo()
            compat.reprobe()
    assert calls == [(("positional",), {"scope": SCOPE, "silent": True})]


def test_enable_torch_proxy_does_nothing_and_returns_false_without_paddle_compat(paddle):
    with profiles.using("hpu"):
        assert compat.enable_torch_proxy(scope=SCOPE, silent=True) is False
        assert compat.enable_torch_proxy() is False


def test_enable_torch_proxy_logs_once_why_it_did_nothing(paddle, caplog):
    with profiles.using("hpu"), caplog.at_level(logging.WARNING, logger="compat"):
        for _ in range(3):
            compat.enable_torch_proxy()
    why = [r.message for r in caplog.records if "enable_torch_proxy uses its fallback" in r.message]
    assert len(why) == 1
    assert "No module named 'paddle.compat'" in why[0]


def test_enable_torch_proxy_follows_the_suite_profile(paddle, suite_profile, expected_paths):
    enabled = compat.enable_torch_proxy(scope=SCOPE, silent=True)
    try:
        assert enabled is (expected_paths[suite_profile]["enable_torch_proxy"] == "native")
    finally:
        if enabled:
            importlib.import_module("paddle.compat").disable_torch_proxy()
