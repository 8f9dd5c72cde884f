"""Live replay: a trace sent to a running router as an open-loop client (``fdrouter replay``).

The simulator (``fdrouter.sim``) answers "what would this trace do to a cluster"; this
package asks the real thing, with the same trace files (fdrouter's JSONL or Mooncake's
block-id format) and the same headline numbers, so a simulated policy ranking can be checked
against a router in front of mock backends (``fdrouter.testing``) or real engines::

    from fdrouter.replay import replay
    run = await replay(load_trace(path)[:300], router.url, speedup=20)
    run.summary["ttft_p99"], run.summary["cache_hit_rate"]

Modules: ``outcome`` (sans-IO: reading a streamed answer, the summary), ``client`` (the
open-loop sender), ``cli`` (the subcommand).
"""

from .client import ReplayRun, replay, request_body
from .outcome import Outcome, summarize

__all__ = ["Outcome", "ReplayRun", "replay", "request_body", "summarize"]
