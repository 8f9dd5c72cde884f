"""ci/: the profile matrix, the GitHub workflow that mirrors it, and the runner's bookkeeping."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compat import profiles

CI = Path(__file__).resolve().parents[2] / "ci"


@pytest.fixture(scope="module")
def run_matrix():
    """ci/run_matrix.py as a module (ci/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("ci_run_matrix", CI / "run_matrix.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_the_matrix_lists_every_profile_compat_defines(run_matrix):
    assert run_matrix.load_profiles() == list(profiles.PROFILES)
    assert run_matrix.PROFILE_ENV == profiles.ENV_VAR


def test_the_github_workflow_runs_the_same_profiles_with_the_profile_variable(run_matrix):
    workflow = yaml.safe_load((CI / "github-workflow.yml").read_text())
    test_job = workflow["jobs"]["test"]
    assert test_job["strategy"]["matrix"]["profile"] == run_matrix.load_profiles()
    assert test_job["env"] == {profiles.ENV_VAR: "${{ matrix.profile }}"}
    commands = [step.get("run", "") for step in test_job["steps"]]
    assert any('pip install -e ".[test,paddle]"' in c for c in commands)
    assert any(c.startswith("python -m pytest") for c in commands)
    lint_steps = [step.get("run") for step in workflow["jobs"]["lint"]["steps"]]
    assert [label for label, _ in run_matrix.LINTERS] == [s for s in lint_steps if s and not s.startswith("python")]


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="20" time="1.5"/></testsuites>
"""


def test_the_runner_counts_errors_as_failures_from_the_junit_report(run_matrix, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    assert run_matrix.read_junit(report) == (14, 3, 3)


def test_the_runner_counts_a_real_pytest_report(run_matrix, tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_passes(): pass\n"
        "def test_fails(): assert False\n"
        "@pytest.mark.skip(reason='a skipped test for the runner to count')\n"
        "def test_skipped(): pass\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"),
         f"--junitxml={report}", str(tmp_path / "test_sample.py")],
        cwd=tmp_path, capture_output=True, timeout=60,
    )  # fmt: skip
    assert run_matrix.read_junit(report) == (1, 1, 1)


def test_the_summary_ends_with_the_line_ci_parses(run_matrix):
    runs = [
        run_matrix.ProfileRun("cpu", 0, passed=87, seconds=41.23),
        run_matrix.ProfileRun("hpu", 1, passed=86, failed=1, skipped=2, seconds=40.0),
    ]
    summary = run_matrix.format_summary(runs, lint_ok=True).splitlines()
    assert summary == [
        "profile    result   passed failed skipped  seconds",
        "cpu        ok           87      0       0     41.2",
        "hpu        FAILED       86      1       2     40.0",
        "lint       ok",
        "matrix: 173 passed, 1 failed",
    ]


def test_the_matrix_fails_on_lint_a_failing_profile_or_a_profile_that_ran_nothing(run_matrix):
    ok = run_matrix.ProfileRun("cpu", 0, passed=3)
    assert run_matrix.succeeded([ok], lint_ok=True)
    assert not run_matrix.succeeded([ok], lint_ok=False)
    assert not run_matrix.succeeded([ok, run_matrix.ProfileRun("hpu", 1, passed=2, failed=1)], lint_ok=True)
    nothing = run_matrix.ProfileRun("iluvatar", 5)
    assert nothing.result == "NO TESTS"
    assert not run_matrix.succeeded([ok, nothing], lint_ok=True)
    all_skipped = run_matrix.ProfileRun("iluvatar", 0, skipped=4)
    assert not run_matrix.succeeded([ok, all_skipped], lint_ok=True)
    crashed = run_matrix.ProfileRun("hpu", 3)  # pytest internal error: no report at all
    assert crashed.result == "FAILED"


def test_extra_args_naming_test_paths_replace_the_whole_suite(run_matrix, tmp_path):
    junit = tmp_path / "j.xml"
    assert run_matrix.pytest_command(["-x", "-k", "swiglu"], junit)[-4:] == ["tests", "-x", "-k", "swiglu"]
    command = run_matrix.pytest_command(["tests/compat", "-x"], junit)
    assert "tests" not in command
    assert command[-2:] == ["tests/compat", "-x"]
    assert command[1:4] == ["-m", "pytest", "-p"]


def test_only_the_first_profile_runs_tests_marked_once(run_matrix, tmp_path):
    junit = tmp_path / "junit.xml"
    first = run_matrix.pytest_command([], junit, first=True)
    later = run_matrix.pytest_command([], junit, first=False)
    assert "not once" not in first
    i = later.index("not once")
    assert later[i - 1] == "-m"
