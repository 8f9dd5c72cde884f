"""pytest plugin: run the whole suite under the paddle platform profile FDROUTER_PADDLE_PROFILE names.

Enable it with ``pytest_plugins = ["compat.pytest_profile"]`` in the root conftest (or
``-p compat.pytest_profile``). At ``pytest_configure``, before any test module is imported
and so before anything probes paddle, it applies the profile (``cpu`` when unset); an
unknown name stops pytest with a usage error listing the known ones. The report header
says which profile is active. A test that switches profiles in-process
(``with compat.profiles.using("hpu"): ...``) gets the suite's profile back afterwards
even if it forgets to restore it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from compat import profiles
from compat.errors import UnknownProfile

_SUITE_PROFILE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Apply the suite-wide profile from the environment."""
    try:
        profile = profiles.apply_from_env()
    except UnknownProfile as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_SUITE_PROFILE] = profile.name


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put paddle back as it was (matters when pytest runs in-process, e.g. pytester)."""
    if _SUITE_PROFILE in config.stash:
        profiles.apply(profiles.DEFAULT_PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    """One header line: the active profile and what it masks."""
    profile = profiles.get(config.stash.get(_SUITE_PROFILE, profiles.DEFAULT_PROFILE))
    masked = ", ".join(profile.masks) or "nothing"
    return f"paddle profile: {profile.name} ({profiles.ENV_VAR}); masked: {masked}"


@pytest.fixture
def paddle_profile(request: pytest.FixtureRequest) -> profiles.Profile:
    """The suite-wide platform profile."""
    return profiles.get(request.config.stash[_SUITE_PROFILE])


@pytest.fixture(autouse=True)
def _restore_paddle_profile(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    suite = request.config.stash.get(_SUITE_PROFILE, profiles.DEFAULT_PROFILE)
    if profiles.active().name != suite:
        profiles.apply(suite)


__all__ = ["paddle_profile", "pytest_configure", "pytest_report_header", "pytest_unconfigure"]
