"""Named, seeded workloads: generators of ``Request`` objects in arrival order.

Every workload is a generator function ``f(*, requests, rate, seed, **options)`` yielding
exactly ``requests`` requests with Poisson arrivals at ``rate`` per second (multi-turn:
conversations start as a Poisson process and the total request rate is about ``rate``).
Same arguments, same requests: all randomness comes from one ``random.Random(seed)``.

Prompt text is cut from one pre-generated filler string (cheap slices, no per-request
random characters). Every prompt that is not meant to share a prefix starts with a
unique tag, so its very first cache block differs and no prefix is ever shared by accident.

- ``shared-prefix``: multi-tenant. A few long system prompts (one per tenant, Zipf-ish
  popularity) shared by many requests, plus a short unique user part. Session = tenant.
- ``multi-turn``: conversations whose prompt grows turn by turn (history + previous answer
  + new question), behind one short app-wide system prompt. Session = conversation.
  Open loop: a next turn may arrive before the previous answer is done (a generated
  workload cannot know the latency); with the default 256 open conversations the mean
  think time is 256 / rate seconds.
- ``long-short``: independent mix of long and short prompts and long and short outputs.
- ``uniform``: prompt and output lengths uniform in a range; no shared prefixes.
- ``trace:PATH``: a JSONL trace, fdrouter's or Mooncake's format, see ``fdrouter.sim.trace``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

from ..validate import estimate_tokens
from .kvcache import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from .block_requests import BlockRequest

__all__ = ["Request", "available_workloads", "make_workload", "synthetic_prompt", "WORKLOADS"]


@dataclass(frozen=True, slots=True)
class Request:
    """One simulated client request."""

    id: int
    """Unique, in arrival order for generated workloads."""
    arrival: float
    """Seconds of simulated time."""
    prompt: str
    """The prompt as one string (what the router would extract for ``prompt_text``)."""
    output_tokens: int
    """Tokens the instance generates (>= 1)."""
    session: str | None = None
    """Session id (what the router would extract for ``session_key``)."""
    prefix: str | None = None
    """Speed hint only: a leading part of ``prompt`` that is (the same str object as) another
    request's prefix or prompt, so the simulator hashes its cache blocks once. Results do
    not change with or without it."""

    @property
    def prompt_tokens(self) -> int:
        """The router's token estimate of the prompt."""
        return estimate_tokens(self.prompt)


_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more can out up into do "
    "model token cache block batch decode prefill router policy instance request stream latency queue"
).split()
_FILLER_CHARS = 1 << 18  # 256 KiB: long enough that random slices rarely repeat


class TextBank:
    """Cheap prompt text: slices of one seeded filler string."""

    def __init__(self, rng: random.Random) -> None:
        words = rng.choices(_WORDS, k=_FILLER_CHARS // 4)
        text = " ".join(words)
        self._text = text + text  # doubled so any slice of up to half its length wraps around
        self._len = len(text)
        self._rng = rng

    def piece(self, chars: int) -> str:
        """``chars`` characters of filler from a random offset."""
        if chars <= 0:
            return ""
        if chars > self._len:
            reps = chars // self._len + 1
            return (self._text[: self._len] * reps)[:chars]
        start = self._rng.randrange(self._len)
        return self._text[start:start + chars]

    def unique(self, tag: str, tokens: int) -> str:
        """A prompt of ``tokens`` estimated tokens that starts with ``tag`` (so no prefix is shared)."""
        chars = max(1, tokens) * CHARS_PER_TOKEN
        head = f"[{tag}] "
        return (head + self.piece(max(0, chars - len(head))))[:chars]


_SYNTH_BODY = " ".join(random.Random(0).choices(_WORDS, k=16384))


def synthetic_prompt(tokens: int, tag: str) -> str:
    """Deterministic text of ``tokens`` estimated tokens starting with ``tag``: for token-count-only requests."""
    chars = max(1, tokens) * CHARS_PER_TOKEN
    head = f"[{tag}] "
    body = _SYNTH_BODY
    if chars > len(body):
        body = body * (chars // len(body) + 1)
    return (head + body)[:chars]


def _poisson_arrivals(rng: random.Random, rate: float) -> Iterator[float]:
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        yield t


def _check(requests: int, rate: float) -> None:
    if requests < 0:
        raise ValueError(f"requests must be >= 0, got {requests}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")


def shared_prefix(
    *, requests: int, rate: float, seed: int = 0, tenants: int = 16, system_tokens: int = 3000,
    user_tokens: tuple[int, int] = (32, 256), output_tokens: tuple[int, int] = (16, 256), skew: float = 0.8,
) -> Iterator[Request]:
    """Multi-tenant: ``tenants`` long system prompts, popularity ∝ 1/rank**skew, plus a unique user part.

    The defaults make the tenants' system prompts (16 x 3000 tokens) overflow one instance's
    cache (EngineModel: 2048 blocks x 16 = 32k tokens) but fit in eight: the regime where
    routing decides the hit rate.
    """
    _check(requests, rate)
    rng = random.Random(seed)
    bank = TextBank(rng)
    systems = [bank.unique(f"tenant {k} system prompt", system_tokens) for k in range(tenants)]
    cum_weights = list(accumulate(1.0 / (k + 1) ** skew for k in range(tenants)))
    arrivals = _poisson_arrivals(rng, rate)
    for rid in range(requests):
        k = rng.choices(range(tenants), cum_weights=cum_weights)[0]
        user = bank.unique(f"user request {rid}", rng.randint(*user_tokens))
        system = systems[k]
        yield Request(rid, next(arrivals), system + " " + user, rng.randint(*output_tokens), f"tenant-{k}", system)


def multi_turn(
    *, requests: int, rate: float, seed: int = 0, conversations: int = 256, turns: tuple[int, int] = (2, 10),
    system_tokens: int = 400, user_tokens: tuple[int, int] = (32, 256), output_tokens: tuple[int, int] = (32, 320),
) -> Iterator[Request]:
    """``conversations`` open conversations; each arrival is the next turn of a random one.

    Arrivals are Poisson at ``rate`` from the first request on (no warm-up); a conversation
    that has had its turns is replaced by a new one, so the mean think time between two
    turns of a conversation is ``conversations / rate``. A turn's prompt is the previous
    turn's prompt plus its answer (synthetic, ``output_tokens`` long) plus a new question.
    """
    _check(requests, rate)
    if conversations < 1:
        raise ValueError(f"conversations must be >= 1, got {conversations}")
    rng = random.Random(seed)
    bank = TextBank(rng)
    system = bank.unique("assistant system prompt", system_tokens)
    arrivals = _poisson_arrivals(rng, rate)
    started = 0
    active: list[list] = []  # [conversation number, previous prompt, history, turns left]
    for rid in range(requests):
        if len(active) < conversations:
            active.append([started, system, system, rng.randint(*turns)])
            started += 1
            slot = len(active) - 1
        else:
            slot = rng.randrange(len(active))
        conv, prefix, history, left = active[slot]
        prompt = history + f"\nUser ({conv}/{rid}): " + bank.piece(rng.randint(*user_tokens) * CHARS_PER_TOKEN)
        out = rng.randint(*output_tokens)
        yield Request(rid, next(arrivals), prompt, out, f"conv-{conv}", prefix)
        if left > 1:
            answer = "\nAssistant: " + bank.piece(out * CHARS_PER_TOKEN)
            active[slot] = [conv, prompt, prompt + answer, left - 1]  # this prompt: the next turn's prefix hint
        else:  # finished: a new conversation takes its place
            active[slot] = [started, system, system, rng.randint(*turns)]
            started += 1


def long_short(
    *, requests: int, rate: float, seed: int = 0, long_prompt_share: float = 0.2, long_output_share: float = 0.2,
    long_prompt: tuple[int, int] = (3000, 6000), short_prompt: tuple[int, int] = (32, 256),
    long_output: tuple[int, int] = (400, 1000), short_output: tuple[int, int] = (8, 64),
) -> Iterator[Request]:
    """Long and short prompts, long and short outputs, drawn independently; no shared prefixes."""
    _check(requests, rate)
    rng = random.Random(seed)
    bank = TextBank(rng)
    arrivals = _poisson_arrivals(rng, rate)
    for rid in range(requests):
        p = rng.randint(*(long_prompt if rng.random() < long_prompt_share else short_prompt))
        o = rng.randint(*(long_output if rng.random() < long_output_share else short_output))
        yield Request(rid, next(arrivals), bank.unique(f"request {rid}", p), o, None)


def uniform(
    *, requests: int, rate: float, seed: int = 0, prompt_tokens: tuple[int, int] = (128, 1024),
    output_tokens: tuple[int, int] = (32, 256),
) -> Iterator[Request]:
    """Prompt and output lengths uniform in their ranges; every prompt unique from its first block."""
    _check(requests, rate)
    rng = random.Random(seed)
    bank = TextBank(rng)
    arrivals = _poisson_arrivals(rng, rate)
    for rid in range(requests):
        prompt = bank.unique(f"request {rid}", rng.randint(*prompt_tokens))
        yield Request(rid, next(arrivals), prompt, rng.randint(*output_tokens), None)


WORKLOADS: dict[str, Callable[..., Iterator[Request]]] = {
    "shared-prefix": shared_prefix,
    "multi-turn": multi_turn,
    "long-short": long_short,
    "uniform": uniform,
}


def available_workloads() -> list[str]:
    """Workload names (plus ``trace:PATH``)."""
    return sorted(WORKLOADS) + ["trace:PATH"]


def make_workload(
    name: str, *, requests: int | None, rate: float, seed: int, **options
) -> Iterable[Request | BlockRequest]:
    """Requests of a named workload; ``trace:PATH`` loads (and checks) a trace file first.

    For a trace, ``requests`` (if given) keeps the first that many by arrival, ``rate`` is unused and
    the options may be ``block_tokens`` and ``time_scale`` (see ``trace.load_trace``).
    Raises ``ValueError`` (``TraceError`` for traces) on bad input, before anything is yielded.
    """
    if name.startswith("trace:"):
        from .trace import load_trace

        unknown = sorted(set(options) - {"block_tokens", "time_scale"})
        if unknown:
            raise ValueError(f"a trace takes the options block_tokens and time_scale, not {', '.join(unknown)}")
        trace = load_trace(name[len("trace:"):], **options)
        return trace if requests is None else trace[:requests]
    try:
        factory = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(available_workloads())}") from None
    if requests is None:
        raise ValueError(f"workload {name!r} needs a number of requests")
    _check(requests, rate)  # now, not at the first next()
    try:
        return factory(requests=requests, rate=rate, seed=seed, **options)
    except TypeError as exc:
        raise ValueError(f"workload {name!r}: {exc}") from None
