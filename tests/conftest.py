"""Shared fixtures: routers and clusters of mock backends on loopback, with leak checks.

The fixtures come from ``fdrouter.testing.pytest_plugin`` (``mock_backend_factory``,
``router_factory``, ``http``, ``cluster``, ``free_port``), written once for the tests, the
notebooks and the benchmarks. Every router made by ``router_factory`` is checked at teardown:
no request in flight and no generation connection still lent out (docs/architecture.md:
"Counters always come back").

Routers are made with the lean front end (``http_front="lean"``, the default) unless a test
module is marked ``pytestmark = pytest.mark.both_fronts``: then each of its tests that makes a
router runs twice, once per front end (``[lean]`` and ``[aiohttp]``), so the guarantees both
front ends promise are proven for both.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from fdrouter.testing.factories import RouterMaker
from fdrouter.testing.polling import wait_until

__all__ = ["wait_until"]

pytest_plugins = ["fdrouter.testing.pytest_plugin", "compat.pytest_profile"]

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (``make test`` runs ``ci``):
# - ci: derandomized (the same examples on every run and machine), no example database, so
#   pass or fail depends on the code alone and never on which examples a run happened to draw;
# - explore: fresh random examples on every run, the same example counts, still no database
#   (``HYPOTHESIS_PROFILE=explore make test``) -- how new failing inputs are found.
# This file is imported before any test module, so module-level ``settings(...)`` objects in the
# tests inherit the loaded profile for everything they do not set themselves.
_HYPOTHESIS_COMMON: dict[str, Any] = dict(database=None, deadline=None, print_blob=True,
                                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("explore", derandomize=False, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


FRONTS = ("lean", "aiohttp")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``both_fronts``: every test that makes a router runs once per front end."""
    if metafunc.definition.get_closest_marker("both_fronts") and "http_front" in metafunc.fixturenames:
        metafunc.parametrize("http_front", FRONTS)


@pytest.fixture
def http_front() -> str:
    """The front end the test's routers get (parametrized over both in ``both_fronts`` modules)."""
    return "lean"


@pytest.fixture
def router_factory(router_factory: RouterMaker, http_front: str) -> RouterMaker:
    """The plugin's ``router_factory``, with ``http_front`` as the default front end."""

    async def make(**config: Any) -> Any:
        config.setdefault("http_front", http_front)
        return await router_factory(**config)

    return make
