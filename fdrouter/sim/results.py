"""Results of a run: one DataFrame row per request and a summary dict.

Columns of ``SimResult.requests`` (times in seconds of simulated time):

- ``request_id``, ``session``, ``arrival``
- ``instance``: the instance that answered (mixed: the only one; splitwise: the decode
  instance), plus ``prefill_instance`` and ``decode_instance`` in splitwise mode
- ``prompt_tokens`` (the router's estimate), ``cached_tokens`` (prefix-cache hit on the
  instance that prefilled), ``output_tokens``
- ``queue_wait``: from reaching the (prefill) instance to being admitted to a batch;
  ``decode_wait`` in splitwise: from the KV cache landing to joining the decode batch
- ``ttft``: arrival to first token (splitwise: the first token *from decode*);
  ``tpot``: time per output token after the first (NaN for one-token outputs);
  ``e2e``: arrival to last token; ``finish``: the time of the last token

pandas is imported here, inside the functions, and nowhere else: ``import fdrouter`` (and
even ``import fdrouter.sim``) stays free of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .instance import Job, SimInstance

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_KEYS = (
    "policy", "workload", "mode", "requests", "ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99", "tpot_p50",
    "queue_wait_mean", "throughput_rps", "cache_hit_rate", "load_imbalance", "makespan_s",
)


@dataclass
class SimResult:
    """What ``simulate`` returns: per-request rows and the summary of the run."""

    requests: pd.DataFrame
    """One row per request, by ``request_id``; times in seconds of simulated time."""
    summary: dict[str, Any]
    """Headline numbers (``SUMMARY_KEYS`` and, in splitwise, per-role load imbalance)."""
    instances: dict[str, list[str]] = field(default_factory=dict)
    """Instance urls by role, in candidate order."""
    meta: dict[str, Any] = field(default_factory=dict)
    """About the run, not its results: ``wall_s`` (seconds the run took here) and ``fdrouter_version``.
    Kept apart from ``summary`` so the summary is a pure function of the inputs and the seed."""

    def per_instance(self) -> pd.DataFrame:
        """Requests, prompt and cached tokens, and hit rate per instance (the serving one in splitwise)."""
        frame = self.requests
        column = "prefill_instance" if "prefill_instance" in frame else "instance"
        grouped = frame.groupby(column, observed=False)
        table = grouped.agg(requests=("request_id", "size"), prompt_tokens=("prompt_tokens", "sum"),
                            cached_tokens=("cached_tokens", "sum"))
        table["cache_hit_rate"] = table["cached_tokens"] / table["prompt_tokens"].where(table["prompt_tokens"] > 0)
        return table


def build_frame(jobs: Sequence[Job], candidates: dict[str, list[SimInstance]], splitwise: bool) -> pd.DataFrame:
    """The per-request DataFrame, sorted by request id."""
    import numpy as np
    import pandas as pd

    jobs = sorted(jobs, key=lambda j: j.rid)
    arrival = np.fromiter((j.arrival for j in jobs), float, len(jobs))
    first = np.fromiter((j.first_token for j in jobs), float, len(jobs))
    finish = np.fromiter((j.finish for j in jobs), float, len(jobs))
    output = np.fromiter((j.output_tokens for j in jobs), np.int64, len(jobs))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), np.nan)

    def urls(role_insts: list[SimInstance], attr: str) -> pd.Categorical:
        # categorical over every instance, so idle instances count as zero in value_counts()
        return pd.Categorical.from_codes([getattr(j, attr).index for j in jobs],
                                         categories=[i.url for i in role_insts])

    columns: dict[str, Any] = {
        "request_id": np.fromiter((j.rid for j in jobs), np.int64, len(jobs)),
        "session": [j.session for j in jobs],
        "arrival": arrival,
    }
    if splitwise:
        columns["instance"] = urls(candidates["decode"], "decode_inst")
        columns["prefill_instance"] = urls(candidates["prefill"], "prefill_inst")
        columns["decode_instance"] = columns["instance"]
    else:
        columns["instance"] = urls(candidates["mixed"], "prefill_inst")
    columns |= {
        "prompt_tokens": np.fromiter((j.prompt_tokens for j in jobs), np.int64, len(jobs)),
        "cached_tokens": np.fromiter((j.cached_tokens for j in jobs), np.int64, len(jobs)),
        "output_tokens": output,
        "queue_wait": np.fromiter((j.queue_wait for j in jobs), float, len(jobs)),
    }
    if splitwise:
        columns["decode_wait"] = np.fromiter((j.decode_wait for j in jobs), float, len(jobs))
    columns |= {"ttft": first - arrival, "tpot": tpot, "e2e": finish - arrival, "finish": finish}
    return pd.DataFrame(columns)


def _pct(values: Any, q: float) -> float:
    import numpy as np

    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else math.nan


def _imbalance(column: pd.Series) -> float:
    counts = column.value_counts(sort=False)
    mean = counts.mean()
    return float(counts.max() / mean) if mean > 0 else math.nan


def summarize(frame: pd.DataFrame, *, policy: str, workload: str, splitwise: bool) -> dict[str, Any]:
    """Headline numbers of a run: a pure function of the rows (wall time lives in ``SimResult.meta``)."""
    n = len(frame)
    makespan = float(frame["finish"].max() - frame["arrival"].min()) if n else 0.0
    prompt = int(frame["prompt_tokens"].sum())
    summary: dict[str, Any] = {
        "policy": policy,
        "workload": workload,
        "mode": "splitwise" if splitwise else "mixed",
        "requests": n,
        "ttft_p50": _pct(frame["ttft"].to_numpy(), 50),
        "ttft_p99": _pct(frame["ttft"].to_numpy(), 99),
        "e2e_p50": _pct(frame["e2e"].to_numpy(), 50),
        "e2e_p99": _pct(frame["e2e"].to_numpy(), 99),
        "tpot_p50": _pct(frame["tpot"].to_numpy(), 50),
        "queue_wait_mean": float(frame["queue_wait"].mean()) if n else math.nan,
        "throughput_rps": n / makespan if makespan > 0 else math.nan,
        "cache_hit_rate": int(frame["cached_tokens"].sum()) / prompt if prompt else 0.0,
        "load_imbalance": math.nan,
        "makespan_s": makespan,
    }
    if splitwise:
        summary["prefill_load_imbalance"] = _imbalance(frame["prefill_instance"]) if n else math.nan
        summary["decode_load_imbalance"] = _imbalance(frame["decode_instance"]) if n else math.nan
        if n:
            summary["load_imbalance"] = max(summary["prefill_load_imbalance"], summary["decode_load_imbalance"])
    elif n:
        summary["load_imbalance"] = _imbalance(frame["instance"])
    return summary


__all__ = ["SUMMARY_KEYS", "SimResult", "build_frame", "summarize"]
