"""Exact KV-cache-aware routing: instances publish what they cache, the router indexes it.

- ``hashing``: the block keys both sides compute (blake2b chained over text blocks);
- ``wire``: the ``GET /kv_events`` line format (vLLM's event batches as JSON lines);
- ``index``: block key -> instances, bounded (``KvIndex``);
- ``stream``: one instance's stream, sans-IO: epochs, cursor, gaps, resyncs (``StreamState``);
- ``subscriber``: the router's background streams on the control pool (``KvEventSubscriber``).

The ``kv_events`` policy (``fdrouter.policies.kv_events``) routes on the index; the mock
backend publishes (``fdrouter.testing.kv_publisher``); the simulator feeds the index from its
instances' caches (``fdrouter.sim.kv_feed``). The contract: docs/kv_events.md.
"""

from .hashing import HASH_SCHEME, text_block_keys, token_block_keys
from .index import KvIndex
from .stream import Incompatible, Resync, StreamState
from .wire import WireError, parse_line

__all__ = [
    "HASH_SCHEME", "Incompatible", "KvIndex", "Resync", "StreamState", "WireError", "parse_line", "text_block_keys",
    "token_block_keys",
]
