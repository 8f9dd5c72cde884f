"""``python -m compat``: which path each compat function takes on the installed paddle.

Honours FDROUTER_PADDLE_PROFILE, so ``FDROUTER_PADDLE_PROFILE=hpu python -m compat``
shows what the HPU profile looks like on this machine.
"""

from __future__ import annotations

import logging
import sys

from compat import probe, profiles
from compat.errors import UnknownProfile


def render() -> str:
    """The features table for the profile in force, with a header naming platform and masks."""
    features = probe.features()
    profile = profiles.active()
    masked = "; ".join(profiles.MASKS[m].description for m in profile.masks) or "nothing"
    width = max(len(name) for name in features)
    lines = [
        f"compat on {probe.platform()}",
        f"profile {profile.name} masks: {masked}",
        "",
        f"{'function':<{width}}  {'path':<11}  why",
    ]
    for feature in features.values():
        lines.append(f"{feature.name:<{width}}  {feature.path:<11}  {feature.reason}")
    return "\n".join(lines)


def main() -> int:
    """Apply the profile from the environment and print the table; 2 on an unknown profile."""
    # the table says why each path was taken; the probe's log lines would only repeat it
    logging.getLogger("compat").setLevel(logging.ERROR)
    try:
        profiles.apply_from_env()
    except UnknownProfile as exc:
        print(f"python -m compat: {exc}", file=sys.stderr)
        return 2
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
