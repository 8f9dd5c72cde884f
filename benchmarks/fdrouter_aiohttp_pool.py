"""``fdrouter serve`` with aiohttp's ClientSession as its generation pool: the benchmark's comparison row.

The router is unchanged: ``fdbench.aiohttp_pool.aiohttp_generation_pool()`` makes its
``UpstreamClient`` build an ``AiohttpPool`` (one long-lived aiohttp session, sized and timed
from the same settings) instead of the hand-written ``Http1Pool``, then ``fdrouter serve``
runs in this process with the given flags. ``bench_router.py`` starts it like ``fdrouter
serve`` and reports it as "fdrouter (aiohttp client pool)", so every run re-measures what the
hand-written pool buys.

    python benchmarks/fdrouter_aiohttp_pool.py --port 0 --worker-urls http://127.0.0.1:8001
"""

from __future__ import annotations

import sys

from fdbench.aiohttp_pool import aiohttp_generation_pool  # benchmarks/ is sys.path[0] for a script

from fdrouter.cli import main as fdrouter_main


def main(argv: list[str] | None = None) -> int:
    """``fdrouter serve ARGV`` with the aiohttp generation pool."""
    with aiohttp_generation_pool():
        return fdrouter_main(["serve", *(sys.argv[1:] if argv is None else argv)])


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
