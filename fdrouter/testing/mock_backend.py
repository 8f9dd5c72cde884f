"""``python -m fdrouter.testing.mock_backend``: run a mock backend from the shell until SIGINT/SIGTERM.

Once bound it prints one line, ``mock backend listening on URL role=ROLE``, that scripts wait for::

    python -m fdrouter.testing.mock_backend --port 8001 --role decode --token-delay 0.01
    python -m fdrouter.testing.mock_backend --port 8001 --engine --max-batch 8 --prefill-per-token 0.0001
    python -m fdrouter.testing.mock_backend --port 8001 --engine llama3-8b-a100

The mock itself lives in its own modules (``backend_server``, ``behavior``, ``openai_shapes``,
``scheduler``, ``streaming``); this module re-exports its public names, so
``from fdrouter.testing.mock_backend import MockBackend, MockBehavior`` keeps working.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

from fdrouter.sim.engine_profiles import DEFAULT_ENGINE_PROFILE, available_engines, engine_profile

from .backend_server import RECEIVED_MAXLEN, ROLES, SHUTDOWN_TIMEOUT, MockBackend
from .behavior import MockBehavior
from .ports import closed_port, free_port
from .scheduler import DEFAULT_ENGINE

uvloop: ModuleType | None
try:  # Probed once: uvloop only speeds up the CLI, nothing depends on it.
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (the `speed` extra)
    uvloop = None

__all__ = [
    "RECEIVED_MAXLEN", "ROLES", "SHUTDOWN_TIMEOUT", "MockBackend", "MockBehavior", "closed_port", "free_port", "main",
]


def _at_least(kind: type[int] | type[float], minimum: int = 0) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], Any]:
    return _at_least(kind, 0)


def _port(text: str) -> int:
    value = _non_negative(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


# (flag, EngineModel field, parser, metavar, help); defaults are EngineModel's, shown in --help.
_ENGINE_FLAGS = (
    ("--max-batch", "max_batch", _at_least(int, 1), "N", "sequences running together; more wait FIFO"),
    ("--cache-blocks", "cache_blocks", _non_negative(int), "N", "prefix-cache capacity in blocks"),
    ("--block-tokens", "block_tokens", _at_least(int, 1), "N", "tokens per prefix-cache block"),
    (
        "--prefill-base",
        "prefill_base_s",
        _non_negative(float),
        "SECONDS",
        "fixed cost of each request's prefill",
    ),
    (
        "--prefill-per-token",
        "prefill_per_token_s",
        _non_negative(float),
        "SECONDS",
        "per uncached prompt token",
    ),
    (
        "--decode-step",
        "decode_base_s",
        _non_negative(float),
        "SECONDS",
        "decode step with one running sequence",
    ),
    (
        "--decode-per-seq",
        "decode_per_seq_s",
        _non_negative(float),
        "SECONDS",
        "added to a step per extra sequence",
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fdrouter.testing.mock_backend",
        description="Run a mock OpenAI-compatible LLM backend until SIGINT/SIGTERM.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port (0: pick a free one; default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--role", choices=ROLES, default="mixed", help="PD role (default mixed)")
    parser.add_argument(
        "--output-tokens",
        type=_non_negative(int),
        default=MockBehavior.output_tokens,
        help="tokens generated per request (default %(default)s)",
    )
    parser.add_argument(
        "--token-delay",
        type=_non_negative(float),
        default=MockBehavior.token_delay,
        help="seconds per generated token, without --engine (default %(default)s)",
    )
    parser.add_argument("--model", default="mock-model", help="served model name (default %(default)s)")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop; auto uses uvloop when installed (default auto)",
    )
    group = parser.add_argument_group(
        "engine model",
        "Time requests like a serving engine (fdrouter.sim.engine_model.EngineModel): continuous batching "
        "of at most --max-batch sequences, the rest waiting FIFO; a request's prefill costs "
        "--prefill-base plus --prefill-per-token per prompt token not in the prefix cache; a decode "
        "step costs --decode-step plus --decode-per-seq per extra running sequence. The prefix "
        "cache is always on; its size flags need --engine. The flags below override the chosen "
        "profile's numbers (their defaults are the toy profile's).",
    )
    group.add_argument(
        "--engine", nargs="?", const=DEFAULT_ENGINE_PROFILE, default=None, metavar="NAME",
        help=f"enable the engine model, a named profile (replaces --token-delay): {', '.join(available_engines())}; "
        f"--engine alone is {DEFAULT_ENGINE_PROFILE}",
    )
    for flag, field, kind, metavar, text in _ENGINE_FLAGS:
        default = getattr(DEFAULT_ENGINE, field)
        group.add_argument(
            flag, dest=field, type=kind, metavar=metavar, default=None, help=f"{text} (default {default})"
        )
    return parser


def _behavior(parser: argparse.ArgumentParser, args: argparse.Namespace) -> MockBehavior:
    """The MockBehavior the flags describe; inconsistent flags are a usage error (exit 2)."""
    engine_fields = {field: getattr(args, field) for _, field, *_ in _ENGINE_FLAGS}
    given = {field: value for field, value in engine_fields.items() if value is not None}
    engine = None
    if args.engine is not None:
        if args.token_delay > 0:
            parser.error("--token-delay has no effect with --engine (use --decode-step)")
        try:
            engine = replace(engine_profile(args.engine), **given)
        except ValueError as exc:
            parser.error(f"engine model: {exc}")
    elif given:
        flag = next(f for f, field, *_ in _ENGINE_FLAGS if field in given)
        parser.error(f"{flag} needs --engine")
    return MockBehavior(output_tokens=args.output_tokens, token_delay=args.token_delay, engine=engine)


async def _serve(args: argparse.Namespace, behavior: MockBehavior) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with MockBackend(
        role=args.role, host=args.host, port=args.port, model=args.model, behavior=behavior
    ) as backend:
        # Scripts wait for this exact line before sending traffic; flush so a pipe sees it now.
        print(f"mock backend listening on {backend.url} role={backend.role}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: serve until SIGINT/SIGTERM, then close and return 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.loop == "uvloop" and uvloop is None:
        parser.error("--loop uvloop: uvloop is not installed")
    behavior = _behavior(parser, args)
    if uvloop is not None and args.loop != "asyncio":
        uvloop.run(_serve(args, behavior))
    else:
        asyncio.run(_serve(args, behavior))
    return 0


if __name__ == "__main__":
    sys.exit(main())
