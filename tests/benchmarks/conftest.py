"""The benchmark's package ``fdbench`` lives in benchmarks/, which is not installed: put it on the path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
DATA = Path(__file__).resolve().parent / "data"

if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
