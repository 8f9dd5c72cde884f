"""``python -m compat``: the features table for the installed paddle and the chosen profile."""

from __future__ import annotations

import pytest

from compat import profiles
from compat.__main__ import render


def _rows(table: str) -> dict[str, str]:
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("function"))
    return {line.split()[0]: line.split()[1] for line in lines[start + 1 :]}


@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_the_table_shows_each_functions_path_under_each_profile(paddle, profile, expected_paths):
    with profiles.using(profile):
        table = render()
    assert table.splitlines()[0].startswith(f"compat on {profile} ")
    assert _rows(table) == expected_paths[profile]


def test_the_table_says_what_the_profile_masks(paddle):
    with profiles.using("iluvatar"):
        header = render().splitlines()[1]
    assert header.startswith(
        "profile iluvatar masks: no paddle.nn.functional.swiglu; registering custom python ops"
    )


def test_python_m_compat_prints_the_table_for_the_profile_in_the_environment(
    run_python, suite_profile, expected_paths
):
    result = run_python("-m", "compat", profile=suite_profile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"compat on {suite_profile} ")
    assert _rows(result.stdout) == expected_paths[suite_profile]


def test_python_m_compat_rejects_an_unknown_profile_with_a_clear_message(run_python):
    result = run_python("-m", "compat", profile="gpu")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "python -m compat: FDROUTER_PADDLE_PROFILE='gpu': unknown paddle profile 'gpu'; "
        "known profiles: cpu, hpu, iluvatar"
    )
