"""compat.pytest_profile: the suite-wide profile is applied at configure time and reported."""

from __future__ import annotations

import subprocess
import sys

PROBE_TEST = """
import sys
from compat import profiles

def test_profile_is_applied_before_tests_and_paddle_is_not_imported_for_it():
    assert profiles.active().name == "hpu"
    assert "paddle" not in sys.modules
"""


def _pytest(tmp_path, child_env, profile):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_probe_profile.py").write_text(PROBE_TEST)
    # both ways of enabling the plugin at once, as CI does: they must not clash
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["compat.pytest_profile"]\n')
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "compat.pytest_profile", "-p", "no:cacheprovider",
         "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path, env=child_env(profile), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_plugin_applies_the_environments_profile_and_names_it_in_the_header(tmp_path, child_env):
    result = _pytest(tmp_path, child_env, "hpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "paddle profile: hpu (FDROUTER_PADDLE_PROFILE); masked: paddle.compat, custom_op_registration"
        in result.stdout.splitlines()
    )


def test_an_unknown_profile_stops_pytest_with_a_usage_error(tmp_path, child_env):
    result = _pytest(tmp_path, child_env, "hpu2")
    assert result.returncode == 4  # pytest.ExitCode.USAGE_ERROR
    assert (
        "FDROUTER_PADDLE_PROFILE='hpu2': unknown paddle profile 'hpu2'; known profiles: cpu, hpu, iluvatar"
        in (result.stderr)
    )
