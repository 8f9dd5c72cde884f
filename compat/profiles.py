"""Platform profiles: make the CPU paddle we have look like a platform's lagging build.

A profile names the features a platform's paddle build lacks. Applying it *masks* those
features in the running interpreter, the way they are absent on that platform:

- a missing module (``paddle.compat``) leaves ``sys.modules`` and any new import of it
  raises ``ModuleNotFoundError: No module named 'paddle.compat'``;
- a missing function (``paddle.nn.functional.swiglu``, ``paddle.static.register_op``) is
  deleted from its module, so ``getattr``/``hasattr`` fail as on the old build.

compat's probes then find the features missing by the very checks that run on the real
platform; nothing in the probes knows about profiles.

Masking never imports paddle (the router stays paddle-free): if paddle is not imported
yet, an import hook applies the masks the moment ``import paddle`` finishes. Everything
removed is kept and put back when another profile is applied, so tests can switch
profiles in-process (``with profiles.using("hpu"): ...``). The suite-wide profile comes
from ``FDROUTER_PADDLE_PROFILE``, applied by ``compat.pytest_profile``; outside pytest,
``apply_from_env()`` does the same (``FDROUTER_PADDLE_PROFILE=hpu python -m compat``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from compat import _paddle
from compat.errors import UnknownProfile

ENV_VAR = "FDROUTER_PADDLE_PROFILE"
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class Mask:
    """How one missing feature shows: modules that cannot be imported, attributes that are gone."""

    feature: str
    description: str
    modules: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    """A platform's paddle build, described by the features (keys of MASKS) it lacks."""

    name: str
    description: str
    masks: tuple[str, ...] = ()


MASKS: dict[str, Mask] = {
    mask.feature: mask
    for mask in (
        Mask(
            "paddle.compat",
            "no paddle.compat module, so no enable_torch_proxy",
            modules=("paddle.compat",),
            # paddle >= 3.2 also re-exports the proxy switches at top level; an old build has neither.
            attributes=(
                ("paddle", "compat"),
                ("paddle", "enable_compat"),
                ("paddle", "disable_compat"),
                ("paddle", "use_compat_guard"),
            ),
        ),
        Mask(
            "swiglu",
            "no paddle.nn.functional.swiglu",
            attributes=(("paddle.nn.functional", "swiglu"), ("paddle.nn.functional.activation", "swiglu")),
        ),
        Mask(
            "custom_op_registration",
            "registering custom python ops fails: no paddle.static.register_op",
            attributes=(("paddle.static", "register_op"), ("paddle.static.python_op", "register_op")),
        ),
    )
}

PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile("cpu", "released CPU paddle: nothing missing"),
        Profile(
            "hpu",
            "Intel HPU CI image: no paddle.compat, custom op registration fails",
            ("paddle.compat", "custom_op_registration"),
        ),
        Profile(
            "iluvatar",
            "Iluvatar CI image: no paddle.nn.functional.swiglu, custom op registration fails",
            ("swiglu", "custom_op_registration"),
        ),
    )
}

# All mutable state, guarded by one re-entrant lock: masks may land from inside an
# `import paddle` that runs beside apply().
_lock = threading.RLock()
_active: Profile = PROFILES[DEFAULT_PROFILE]
_generation = 0
_masked = False
_saved_modules: dict[str, ModuleType] = {}
_saved_attributes: dict[tuple[str, str], tuple[ModuleType, Any]] = {}


def get(name: str) -> Profile:
    """The profile called ``name``; UnknownProfile (listing the known ones) if there is none."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UnknownProfile(f"unknown paddle profile {name!r}; known profiles: {known}") from None


def active() -> Profile:
    """The profile in force in this interpreter (``cpu`` until one is applied)."""
    return _active


def generation() -> int:
    """A counter bumped by every apply(); compat re-probes when it changes."""
    return _generation


def apply(name: str) -> Profile:
    """Make ``name`` the profile in force: undo the previous masks, then mask what it lacks.

    Does not import paddle; if paddle is not imported yet, the masks land right after it is.
    """
    global _active, _generation
    profile = get(name)
    with _lock:
        _unmask()
        _active = profile
        _generation += 1
        if profile.masks:
            _paddle.when_imported(_mask_active_profile)
    return profile


def apply_from_env(environ: Mapping[str, str] | None = None) -> Profile:
    """Apply the profile named by FDROUTER_PADDLE_PROFILE (``cpu`` when unset or empty)."""
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_VAR, "").strip() or DEFAULT_PROFILE
    try:
        return apply(name)
    except UnknownProfile as exc:
        raise UnknownProfile(f"{ENV_VAR}={name!r}: {exc}") from None


@contextmanager
def using(name: str) -> Iterator[Profile]:
    """Apply ``name`` for the duration of a ``with`` block, then restore the previous profile."""
    previous = _active.name
    profile = apply(name)
    try:
        yield profile
    finally:
        apply(previous)


def _mask_active_profile(paddle: ModuleType) -> None:
    with _lock:
        if _active.masks and not _masked:
            _mask()


def _mask() -> None:
    global _masked
    blocked = set()
    for feature in _active.masks:
        mask = MASKS[feature]
        for name in mask.modules:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                _saved_modules[key] = sys.modules.pop(key)
            blocked.add(name)
        for module_name, attribute in mask.attributes:
            module = sys.modules.get(module_name)
            # a paddle version that never had the attribute needs no masking
            if module is not None and attribute in vars(module):
                _saved_attributes[(module_name, attribute)] = (module, vars(module)[attribute])
                delattr(module, attribute)
    _paddle.block(frozenset(blocked))
    _masked = True


def _unmask() -> None:
    global _masked
    _paddle.block(frozenset())
    for key, module in _saved_modules.items():
        sys.modules.setdefault(key, module)
    for (_, attribute), (module, value) in _saved_attributes.items():
        setattr(module, attribute, value)
    _saved_modules.clear()
    _saved_attributes.clear()
    _masked = False


__all__ = [
    "DEFAULT_PROFILE",
    "ENV_VAR",
    "MASKS",
    "PROFILES",
    "Mask",
    "Profile",
    "active",
    "apply",
    "apply_from_env",
    "generation",
    "get",
    "using",
]
