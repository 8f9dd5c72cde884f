"""Fixtures for the compat tests: paddle, the paths each profile should take, a subprocess runner.

The suite-wide profile comes from FDROUTER_PADDLE_PROFILE through the
``compat.pytest_profile`` plugin (enabled in the root conftest).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from compat import profiles

REPO = Path(__file__).resolve().parents[2]

# What each profile must make compat choose. Kept here, apart from compat.profiles, so the
# tests state the expectation independently of the masks that produce it.
EXPECTED_PATHS = {
    "cpu": {
        "enable_torch_proxy": "native",
        "swiglu": "native",
        "tensor_model_parallel_all_reduce": "native",
        "decode_alltoall_transpose": "unavailable",
    },
    "hpu": {
        "enable_torch_proxy": "fallback",
        "swiglu": "native",
        "tensor_model_parallel_all_reduce": "fallback",
        "decode_alltoall_transpose": "unavailable",
    },
    "iluvatar": {
        "enable_torch_proxy": "native",
        "swiglu": "fallback",
        "tensor_model_parallel_all_reduce": "fallback",
        "decode_alltoall_transpose": "unavailable",
    },
}


@pytest.fixture
def paddle() -> ModuleType:
    """paddle, imported under the suite's profile (so its masks are in place)."""
    return pytest.importorskip("paddle")


@pytest.fixture
def expected_paths() -> dict[str, dict[str, str]]:
    """Profile name -> compat function -> the path it must take."""
    return EXPECTED_PATHS


@pytest.fixture
def suite_profile(paddle_profile: profiles.Profile) -> str:
    """The name of the profile this pytest run is under (from compat.pytest_profile)."""
    return paddle_profile.name


def _child_env(profile: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # one thread per child: the machine has 2 cores and children run beside pytest
    env.setdefault("OMP_NUM_THREADS", "1")
    if profile is not None:
        env[profiles.ENV_VAR] = profile
    return env


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    """``child_env(profile=None)``: an environment for a child python that imports this repo."""
    return _child_env


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_python(*argv, profile=None, timeout=60)``: run ``python *argv`` in a fresh interpreter at the repo root."""

    def run(*argv: str, profile: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *argv],
            cwd=REPO,
            env=_child_env(profile),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
