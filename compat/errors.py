"""The errors compat raises, in one small tree, each naming what is missing and what to do.

Each also derives from the builtin a caller would catch without knowing compat:
a missing paddle is an ``ImportError``, a missing op a ``RuntimeError``, a bad profile
name a ``ValueError``.
"""

from __future__ import annotations


class CompatError(Exception):
    """Root of every error compat raises."""


class PaddleMissing(CompatError, ImportError):
    """A compat function was called but paddle cannot be imported."""


class OpUnavailable(CompatError, RuntimeError):
    """An op has neither a native implementation nor a fallback on this platform."""


class UnknownProfile(CompatError, ValueError):
    """A platform profile name (e.g. from FDROUTER_PADDLE_PROFILE) that no profile has."""


__all__ = ["CompatError", "OpUnavailable", "PaddleMissing", "UnknownProfile"]
