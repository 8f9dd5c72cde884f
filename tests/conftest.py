"""Shared fixtures: routers and clusters of mock backends on loopback, with leak checks.

The fixtures come from ``fdrouter.testing.pytest_plugin`` (``mock_backend_factory``,
``router_factory``, ``http``, ``cluster``, ``free_port``), written once for the tests, the
notebooks and the benchmarks. Every router made by ``router_factory`` is checked at teardown:
no request in flight and no generation connection still lent out (docs/architecture.md:
"Counters always come back").
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

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
