"""compat.profiles: masking a platform's missing paddle features, and undoing it."""

from __future__ import annotations

import importlib
import os

import pytest

import compat
from compat import profiles


def test_the_suite_runs_under_the_profile_named_by_the_environment():
    # fails when compat.pytest_profile is not loaded: every profile run would then be cpu
    assert profiles.active().name == (os.environ.get(profiles.ENV_VAR, "").strip() or "cpu")


def test_an_unknown_profile_name_is_a_clear_error_listing_the_known_ones():
    with pytest.raises(compat.UnknownProfile, match=r"'tpu'.*known profiles: cpu, hpu, iluvatar"):
        profiles.apply("tpu")


def test_an_unknown_profile_in_the_environment_names_the_variable():
    with pytest.raises(ValueError, match=r"FDROUTER_PADDLE_PROFILE='HPU'.*known profiles"):
        profiles.apply_from_env({profiles.ENV_VAR: "HPU "})


def test_an_unset_or_empty_environment_variable_means_the_cpu_profile(suite_profile):
    try:
        assert profiles.apply_from_env({}).name == "cpu"
        assert profiles.apply_from_env({profiles.ENV_VAR: " "}).name == "cpu"
    finally:
        profiles.apply(suite_profile)


def test_the_hpu_profile_hides_paddle_compat_and_custom_op_registration_as_an_old_build_does(paddle):
    with profiles.using("hpu"):
        with pytest.raises(ModuleNotFoundError, match=r"^No module named 'paddle.compat'$"):
            importlib.import_module("paddle.compat")
        assert not hasattr(paddle, "compat")
        assert not hasattr(paddle, "enable_compat")
        with pytest.raises(AttributeError, match="register_op"):
            paddle.static.register_op  # noqa: B018 - the access is the test
        assert callable(paddle.nn.functional.swiglu)


def test_the_iluvatar_profile_hides_swiglu_and_custom_op_registration(paddle):
    with profiles.using("iluvatar"):
        assert not hasattr(paddle.nn.functional, "swiglu")
        assert not hasattr(paddle.static, "register_op")
        assert callable(importlib.import_module("paddle.compat").enable_torch_proxy)


def test_the_cpu_profile_hides_nothing(paddle):
    with profiles.using("cpu"):
        assert callable(importlib.import_module("paddle.compat").enable_torch_proxy)
        assert callable(paddle.nn.functional.swiglu)
        assert callable(paddle.static.register_op)


def test_leaving_a_profile_puts_back_the_very_same_paddle_objects(paddle):
    with profiles.using("cpu"):
        before = (paddle.compat, paddle.nn.functional.swiglu, paddle.static.register_op)
        with profiles.using("hpu"), profiles.using("iluvatar"):
            pass
        assert (paddle.compat, paddle.nn.functional.swiglu, paddle.static.register_op) == before
        assert importlib.import_module("paddle.compat") is before[0]


def test_switching_profiles_makes_compat_probe_again_without_being_told(paddle):
    with profiles.using("hpu"):
        assert compat.features()["enable_torch_proxy"].path == "fallback"
    with profiles.using("cpu"):
        assert compat.features()["enable_torch_proxy"].path == "native"


def test_a_profile_applied_before_paddle_is_imported_masks_it_on_import_without_importing_it(run_python):
    code = (
        "import sys\n"
        "from compat import profiles\n"
        "profiles.apply('iluvatar')\n"
        "assert 'paddle' not in sys.modules, 'applying a profile imported paddle'\n"
        "import paddle\n"
        "assert not hasattr(paddle.nn.functional, 'swiglu')\n"
        "assert not hasattr(paddle.static, 'register_op')\n"
        "profiles.apply('cpu')\n"
        "assert callable(paddle.nn.functional.swiglu)\n"
        "print('ok')\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
