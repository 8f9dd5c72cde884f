"""``simulate()``: one call from policy and workload names (or objects) to a ``SimResult``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence, Sized
from itertools import islice
from typing import Any

from .. import __version__
from .. import policies as _policies
from ..extras import require
from ..policies.base import Policy
from .block_requests import BlockRequest
from .engine_model import EngineModel
from .engine_profiles import DEFAULT_ENGINE_PROFILE, engine_profile
from .instance import DECODE, MIXED, PREFILL
from .results import SimResult, build_frame, summarize
from .simulator import ClusterConfig, Simulator
from .trace import Trace
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


def _block_size(stream: Iterable[Request | BlockRequest]) -> int | None:
    """The block size of a block-id workload (a Mooncake trace, or a list of BlockRequest), else None."""
    if isinstance(stream, Trace):
        return stream.block_tokens
    if isinstance(stream, Sequence) and stream and isinstance(stream[0], BlockRequest):
        return stream[0].block_tokens
    return None


def resolve_engine(
    engine: EngineModel | str | None, *, block_tokens: int | None = None, cache_tokens: int | None = None,
) -> EngineModel:
    """An ``EngineModel`` from a model, a profile name or None (the default profile), with its
    prefix cache re-blocked to ``block_tokens`` (capacity in tokens kept) and resized to
    ``cache_tokens`` (rounded down to whole blocks) when those are given."""
    model = engine_profile(engine or DEFAULT_ENGINE_PROFILE) if engine is None or isinstance(engine, str) else engine
    if block_tokens is not None or cache_tokens is not None:
        model = model.with_cache(block_tokens=block_tokens, cache_tokens=cache_tokens)
    return model


def simulate(
    policy: str | Policy = "request_num",
    workload: str | Iterable[Request | BlockRequest] = "shared-prefix",
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
    engine: EngineModel | str | None = None,
    policy_options: Mapping[str, Any] | None = None,
    workload_options: Mapping[str, Any] | None = None,
    scrape_interval: float = 1.0,
    kv_event_delay: float = 0.0,
    progress: bool = False,
    cache_tokens: int | None = None,
    block_tokens: int | None = None,
    time_scale: float | None = None,
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

    ``engine``: an ``EngineModel`` or a profile name (``engine_profiles.available_engines()``;
    default ``toy``). ``cache_tokens``: each instance's prefix-cache capacity in tokens (default:
    the engine's). ``block_tokens``: for a Mooncake trace, the tokens per ``hash_ids`` block
    (default 512), which the prefix cache then uses too; for other workloads, the prefix
    cache's block size. ``time_scale`` multiplies a ``trace:PATH``'s arrival times.

    Bad input (unknown names, bad options, a bad trace, ``rate <= 0``) raises ``ValueError``.
    """
    require("sim", what="the simulator")  # before any work: never a ModuleNotFoundError after the run
    started = time.perf_counter()
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if splitwise:
        prefill = max(1, instances // 2) if prefill is None else prefill
        decode = max(1, instances - instances // 2) if decode is None else decode
    if cache_tokens is not None and cache_tokens < 0:
        raise ValueError(f"cache_tokens must be >= 0, got {cache_tokens}")
    if block_tokens is not None and block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    is_trace = isinstance(workload, str) and workload.startswith("trace:")
    if time_scale is not None and not is_trace:
        raise ValueError("time_scale applies to trace:PATH workloads only (named workloads take a rate)")
    specs = {PREFILL: prefill_policy, DECODE: decode_policy} if splitwise else {MIXED: policy}
    built = build_policies(specs, policy_options or {}, seed)

    stream: Iterable[Request | BlockRequest]
    if isinstance(workload, str):
        options = dict(workload_options or {})
        if is_trace:
            options.update({k: v for k, v in (("block_tokens", block_tokens), ("time_scale", time_scale))
                            if v is not None})
        elif requests is None:
            requests = DEFAULT_REQUESTS
        stream = make_workload(workload, requests=requests, rate=rate, seed=seed, **options)
        label = workload
    else:
        if workload_options:
            raise ValueError("workload_options apply to named workloads only")
        stream, label = workload, "custom"
    trace_blocks = _block_size(stream)
    if trace_blocks is not None and block_tokens is not None and block_tokens != trace_blocks:
        raise ValueError(f"block_tokens={block_tokens} but the workload's blocks are {trace_blocks} tokens")
    model = resolve_engine(engine, block_tokens=trace_blocks or block_tokens, cache_tokens=cache_tokens)
    if not isinstance(workload, str) and requests is not None:
        stream = islice(stream, requests)
    config = ClusterConfig(
        instances=instances, splitwise=splitwise, prefill=prefill or 1, decode=decode or 1,
        engine=model, scrape_interval=scrape_interval, kv_event_delay=kv_event_delay,
    )
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
    summary["engine"] = model.name or "custom"
    summary["cache_tokens"] = model.cache_tokens
    if splitwise:
        summary["prefill_policy"], summary["decode_policy"] = _label(prefill_policy), _label(decode_policy)
    urls = {role: [i.url for i in insts] for role, insts in sim.candidates.items()}
    meta = {"wall_s": time.perf_counter() - started, "fdrouter_version": __version__}
    return SimResult(requests=frame, summary=summary, instances=urls, meta=meta)


__all__ = ["DEFAULT_REQUESTS", "build_policies", "resolve_engine", "simulate"]
