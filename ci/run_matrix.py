"""Lint, then the whole test suite once per paddle platform profile, then a summary.

    python ci/run_matrix.py [extra pytest args]

1. ``ruff check .`` and ``mypy`` (its file list is in pyproject.toml) at the repo root.
2. ``python -m pytest -p compat.pytest_profile tests [extra args]`` once per profile in
   ci/matrix.yaml, with FDROUTER_PADDLE_PROFILE set. Tests marked ``once`` run in the
   first profile only (``-m "not once"`` in the others). Output streams to the console as it
   runs; counts come from a ``--junitxml`` report in a temporary directory. Extra args
   that name test paths (``tests/compat``, ``tests/x.py::test_y``) replace ``tests``.
3. A table of counts and durations per profile, then as the very last line
   ``matrix: N passed, M failed`` (totals over all profiles; CI parses it).

Exits 1 if lint fails, any profile fails, or any profile ran no test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MATRIX_FILE = Path(__file__).with_name("matrix.yaml")
# compat.profiles.ENV_VAR; not imported, so the runner works before the package is installed
PROFILE_ENV = "FDROUTER_PADDLE_PROFILE"


@dataclass
class ProfileRun:
    """One profile's pytest run: exit code, counts from its junit report, wall time."""

    profile: str
    returncode: int
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def result(self) -> str:
        """``ok``, ``FAILED``, or ``NO TESTS`` (ran none: as bad as failing)."""
        if self.failed or self.returncode not in (0, 5):  # 5: pytest collected nothing
            return "FAILED"
        if self.passed == 0:
            return "NO TESTS"
        return "ok"


def load_profiles(path: Path = MATRIX_FILE) -> list[str]:
    """The profile names listed in the matrix file."""
    profiles = yaml.safe_load(path.read_text())["profiles"]
    if not profiles or not all(isinstance(p, str) for p in profiles):
        raise SystemExit(f"{path}: 'profiles' must be a non-empty list of names")
    return profiles


def read_junit(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest junit report; errors count as failed."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def pytest_command(extra_args: list[str], junit: Path, *, first: bool = True) -> list[str]:
    """The pytest invocation for one profile: whole tests/ unless extra args name paths.

    Tests marked ``once`` (notebooks, chaos, soak: long, and blind to the paddle profile)
    run in the first profile only; the others deselect them with ``-m "not once"``.
    """
    names_paths = any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in extra_args)
    targets = [] if names_paths else ["tests"]
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "compat.pytest_profile",
        f"--junitxml={junit}",
        *([] if first else ["-m", "not once"]),
        *targets,
        *extra_args,
    ]


LINTERS = (("ruff check .", ["ruff", "check", "."]), ("mypy", ["mypy"]))
"""(label, ``python -m`` arguments): each runs from the repo root; all must be clean."""


def run_lint() -> bool:
    """Every linter in LINTERS from the repo root, output streamed; True if all are clean."""
    ok = True
    for label, args in LINTERS:
        _banner(f"lint: {label}")
        try:
            ok &= subprocess.run([sys.executable, "-m", *args], cwd=ROOT).returncode == 0
        except OSError as exc:
            print(f"{label} could not run: {exc}", flush=True)
            ok = False
    return ok


def run_profile(profile: str, extra_args: list[str], workdir: Path, *, first: bool = True) -> ProfileRun:
    """Run pytest under ``profile``, streaming its output; counts from its junit report."""
    junit = workdir / f"junit-{profile}.xml"
    command = pytest_command(extra_args, junit, first=first)
    _banner(f"profile {profile}: {PROFILE_ENV}={profile} {' '.join(command[1:])}")
    env = {**os.environ, PROFILE_ENV: profile}
    started = time.monotonic()
    returncode = subprocess.run(command, cwd=ROOT, env=env).returncode
    run = ProfileRun(profile, returncode, seconds=time.monotonic() - started)
    if junit.exists():
        run.passed, run.failed, run.skipped = read_junit(junit)
    return run


def format_summary(runs: list[ProfileRun], lint_ok: bool) -> str:
    """The summary table, ending with the ``matrix: N passed, M failed`` line."""
    lines = [f"{'profile':<10} {'result':<8} {'passed':>6} {'failed':>6} {'skipped':>7} {'seconds':>8}"]
    for run in runs:
        lines.append(
            f"{run.profile:<10} {run.result:<8} {run.passed:>6} {run.failed:>6} {run.skipped:>7} {run.seconds:>8.1f}"
        )
    lines.append(f"{'lint':<10} {'ok' if lint_ok else 'FAILED'}")
    passed = sum(run.passed for run in runs)
    failed = sum(run.failed for run in runs)
    lines.append(f"matrix: {passed} passed, {failed} failed")
    return "\n".join(lines)


def succeeded(runs: list[ProfileRun], lint_ok: bool) -> bool:
    """True only if lint is clean and every profile ran tests and passed."""
    return lint_ok and bool(runs) and all(run.result == "ok" for run in runs)


def main(argv: list[str]) -> int:
    """Run the matrix; 0 if everything passed, else 1."""
    profiles = load_profiles()
    # lint first but never instead of the tests: one run should show every problem
    lint_ok = run_lint()
    with tempfile.TemporaryDirectory(prefix="fdrouter-matrix-") as workdir:
        runs = [run_profile(profile, argv, Path(workdir), first=i == 0) for i, profile in enumerate(profiles)]
    _banner("summary")
    print(format_summary(runs, lint_ok), flush=True)
    return 0 if succeeded(runs, lint_ok) else 1


def _banner(text: str) -> None:
    print(f"\n===== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
