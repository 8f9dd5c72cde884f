"""Trace data shipped with fdrouter (sources and licenses in ``README.md`` next to this file)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "MOONCAKE_SYNTHETIC_TRACE"]

DATA_DIR = Path(__file__).resolve().parent

MOONCAKE_SYNTHETIC_TRACE = DATA_DIR / "mooncake_synthetic_trace.jsonl"
"""The Mooncake FAST'25 release's synthetic trace (3,993 requests; Apache-2.0, kvcache-ai/Mooncake)."""
