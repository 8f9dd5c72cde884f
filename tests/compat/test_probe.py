"""compat.probe: one lazy, cached decision per function, reported by features()."""

from __future__ import annotations

import logging

import pytest

import compat
from compat import activation, collective, probe, profiles


def test_features_report_the_expected_path_for_the_suite_profile(paddle, suite_profile, expected_paths):
    paths = {name: feature.path for name, feature in compat.features().items()}
    assert paths == expected_paths[suite_profile]


@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_features_report_the_expected_path_under_each_profile(paddle, profile, expected_paths):
    with profiles.using(profile):
        paths = {name: feature.path for name, feature in compat.features().items()}
    assert paths == expected_paths[profile]


def test_each_function_calls_what_its_feature_report_says(paddle, suite_profile):
    features = compat.features()
    swiglu = probe.resolve("swiglu")
    if features["swiglu"].path == "native":
        assert swiglu is paddle.nn.functional.swiglu
    else:
        assert swiglu is activation.swiglu_fallback
    all_reduce = probe.resolve("tensor_model_parallel_all_reduce")
    if features["tensor_model_parallel_all_reduce"].path == "native":
        # the op paddle.static.register_op built around the eager body
        assert all_reduce is not collective.all_reduce_eager
        assert all_reduce.__wrapped__ is collective.all_reduce_eager
    else:
        assert all_reduce is collective.all_reduce_eager


def test_every_report_says_why_and_names_the_function(paddle):
    for name, feature in compat.features().items():
        assert feature.name == name
        assert feature.path in ("native", "fallback", "unavailable")
        assert feature.reason


def test_probing_happens_once_and_is_cached(paddle, caplog):
    with profiles.using("iluvatar"):
        with caplog.at_level(logging.WARNING, logger="compat"):
            compat.features()
            x = paddle.ones([2, 4])
            compat.swiglu(x)
            compat.swiglu(x)
            compat.features()
    fallbacks = [
        r for r in caplog.records if r.name == "compat" and "compat.swiglu uses its fallback" in r.message
    ]
    assert len(fallbacks) == 1


def test_reprobe_decides_again_and_logs_the_fallback_again(paddle, caplog):
    with profiles.using("hpu"):
        compat.features()
        with caplog.at_level(logging.WARNING, logger="compat"):
            features = compat.reprobe()
    assert features["enable_torch_proxy"].path == "fallback"
    assert [r.message for r in caplog.records if "enable_torch_proxy uses its fallback" in r.message]


def test_platform_names_the_device_and_paddle_version_and_any_emulated_profile(paddle):
    with profiles.using("cpu"):
        assert compat.platform() == f"cpu (paddle {paddle.__version__})"
    with profiles.using("hpu"):
        assert compat.platform() == f"hpu (profile emulated on cpu, paddle {paddle.__version__})"


def test_a_probe_for_an_unknown_function_is_refused():
    with pytest.raises(ValueError, match="not a compat function"):
        probe.register("flash_attention")
