"""``simulate()``: one call from policy and workload names (or objects) to a ``SimResult``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sized
from itertools import islice
from typing import Any

from .. import __version__
from .. import policies as _policies
from ..extras import require
from ..policies.base import Policy
from .engine_model import EngineModel
from .instance import DECODE, MIXED, PREFILL
from .results import SimResult, build_frame, summarize
from .simulator import ClusterConfig, Simulator
from .workloads import Request, make_workload

DEFAULT_REQUESTS = 1000


def build_policies(
    specs: Mapping[str, str | Policy], options: Mapping[str, Any], seed: int
) -> dict[str, Policy]:
    """One policy per role from names or ready objects, like ``Router.__init__``.

    Each policy built by name gets the subset of ``options`` its constructor accepts (an
    option no policy accepts is an error) and, if it takes a ``seed`` and none was given,
    a seed derived from the run's, so a ``random`` policy replays identically.
    """
    built: dict[str, Policy] = {}
    used: set[str] = set()
    for n, (role, spec) in enumerate(specs.items()):
        if not isinstance(spec, str):
            if not callable(getattr(spec, "choose", None)) or not isinstance(getattr(spec, "needs", None), frozenset):
                raise ValueError(f"{role} policy {spec!r} is neither a registered name nor a policy object")
            built[role] = spec
            continue
        if spec not in _policies.available_policies():
            raise ValueError(f"unknown policy {spec!r}; choose from {', '.join(_policies.available_policies())}")
        accepted = _policies.policy_options(spec)
        mine = {k: v for k, v in options.items() if k in accepted}
        used |= set(mine)
        if "seed" not in mine and "seed" in accepted:
            mine["seed"] = seed * 2 + n  # distinct per role, fixed per run
        try:
            built[role] = _policies.make_policy(spec, **mine)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"policy {spec!r} rejected its options {mine}: {exc}") from None
    unknown = sorted(set(options) - used)
    if unknown:
        names = ", ".join(s if isinstance(s, str) else type(s).__name__ for s in specs.values())
        raise ValueError(f"policy option(s) {', '.join(unknown)} not accepted by {names}")
    return built


def _label(spec: str | Policy) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def simulate(
    policy: str | Policy = "request_num",
    workload: str | Iterable[Request] = "shared-prefix",
    *,
    instances: int = 8,
    requests: int | None = None,
    rate: float = 40.0,
    seed: int = 0,
    splitwise: bool = False,
    prefill: int | None = None,
    decode: int | None = None,
    prefill_policy: str | Policy = "process_tokens",
    decode_policy: str | Policy = "request_num",
    engine: EngineModel | None = None,
    policy_options: Mapping[str, Any] | None = None,
    workload_options: Mapping[str, Any] | None = None,
    scrape_interval: float = 1.0,
    kv_event_delay: float = 0.0,
    progress: bool = False,
) -> SimResult:
    """Simulate a cluster behind routing policies; deterministic for a given ``seed``.

    ``policy`` routes in mixed mode; in splitwise mode ``prefill_policy`` and
    ``decode_policy`` do (the router's defaults, and like the router ``policy`` is then
    unused). Each may be a registered name or a policy object: an object keeps its state
    between runs, so pass a fresh one per run for independent results.

    ``workload`` is a name (see ``available_workloads()``, with ``workload_options`` going
    to its generator; ``requests`` defaults to 1000), ``trace:PATH`` or any iterable of
    ``Request`` in arrival order (for these two ``rate`` is unused and ``requests``, if
    given, keeps only the first that many). ``kv_event_delay``: seconds until a change of an
    instance's prefix cache reaches a ``kv_events`` policy's index. In splitwise mode,
    ``prefill`` and ``decode`` default to half of ``instances`` each.

    Bad input (unknown names, bad options, a bad trace, ``rate <= 0``) raises ``ValueError``.
    """
    require("sim", what="the simulator")  # before any work: never a ModuleNotFoundError after the run
    started = time.perf_counter()
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if splitwise:
        prefill = max(1, instances // 2) if prefill is None else prefill
        decode = max(1, instances - instances // 2) if decode is None else decode
    config = ClusterConfig(
        instances=instances, splitwise=splitwise, prefill=prefill or 1, decode=decode or 1,
        engine=engine or EngineModel(), scrape_interval=scrape_interval, kv_event_delay=kv_event_delay,
    )
    specs = {PREFILL: prefill_policy, DECODE: decode_policy} if splitwise else {MIXED: policy}
    built = build_policies(specs, policy_options or {}, seed)

    if isinstance(workload, str):
        if requests is None and not workload.startswith("trace:"):
            requests = DEFAULT_REQUESTS
        stream: Iterable[Request] = make_workload(workload, requests=requests, rate=rate, seed=seed,
                                                  **(workload_options or {}))
        label = workload
    else:
        if workload_options:
            raise ValueError("workload_options apply to named workloads only")
        stream, label = workload, "custom"
        if requests is not None:
            stream = islice(workload, requests)
    total = len(stream) if isinstance(stream, Sized) else requests  # for the progress bar only

    bar, on_finish = None, None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="req", desc="simulate")

        def on_finish(done: int) -> None:
            if done % 1000 == 0:
                bar.update(1000)

    sim = Simulator(config, built, stream, on_finish=on_finish)
    try:
        jobs = sim.run()
    finally:
        if bar is not None:
            bar.update(sim.finished - bar.n)
            bar.close()

    frame = build_frame(jobs, sim.candidates, splitwise)
    name = f"{_label(prefill_policy)}/{_label(decode_policy)}" if splitwise else _label(policy)
    summary = summarize(frame, policy=name, workload=label, splitwise=splitwise)
    summary["instances"] = len(sim.instances)
    summary["seed"] = seed
    if splitwise:
        summary["prefill_policy"], summary["decode_policy"] = _label(prefill_policy), _label(decode_policy)
    urls = {role: [i.url for i in insts] for role, insts in sim.candidates.items()}
    meta = {"wall_s": time.perf_counter() - started, "fdrouter_version": __version__}
    return SimResult(requests=frame, summary=summary, instances=urls, meta=meta)


__all__ = ["DEFAULT_REQUESTS", "build_policies", "simulate"]
