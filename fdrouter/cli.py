"""Command line: ``fdrouter serve`` (the blocking wrapper around RouterServer)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .config import ConfigError, RouterConfig, load_config_file, load_instances_file, parse_worker_urls
from .policies import available_policies

# flag -> (RouterConfig field, type, help). Flags left out keep the file's or the default value.
_SERVE_FLAGS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "bind address (default 127.0.0.1; use 0.0.0.0 to expose the router)"),
    ("--port", "port", int, "bind port (default 9000; 0 picks a free port)"),
    ("--request-timeout-secs", "request_timeout_secs", float, "total timeout of one upstream request (default 1800)"),
    ("--connect-timeout-secs", "connect_timeout_secs", float, "TCP connect timeout to an instance (default 10)"),
    ("--max-connections", "max_connections", int, "generation connection pool size (default 4096)"),
    ("--max-connections-per-host", "max_connections_per_host", int,
     "per-instance generation connection cap, 0 = none (default 0)"),
    ("--keepalive-timeout-secs", "keepalive_timeout_secs", float, "idle keep-alive of pooled connections (default 60)"),
    ("--health-failure-threshold", "health_failure_threshold", int,
     "consecutive failed checks before an instance is taken out (default 3)"),
    ("--health-success-threshold", "health_success_threshold", int,
     "consecutive good checks before it is re-admitted (default 2)"),
    ("--health-check-timeout-secs", "health_check_timeout_secs", float, "timeout of one health check (default 5)"),
    ("--health-check-interval-secs", "health_check_interval_secs", float, "time between health rounds (default 5)"),
    ("--health-check-endpoint", "health_check_endpoint", str, "path probed on instances (default /health)"),
    ("--health-pool-size", "health_pool_size", int, "connections of the separate health/control pool (default 32)"),
    ("--policy", "policy", str, "routing policy in mixed mode (default request_num)"),
    ("--prefill-policy", "prefill_policy", str, "prefill policy in splitwise mode (default process_tokens)"),
    ("--decode-policy", "decode_policy", str, "decode policy in splitwise mode (default request_num)"),
    ("--max-body-bytes", "max_body_bytes", int, "largest request body accepted, else 413 (default 33554432)"),
    ("--api-key", "api_key", str, "require 'Authorization: Bearer KEY' on inference endpoints "
     "(default: $FDROUTER_API_KEY, else none)"),
    ("--log-level", "log_level", str, "debug, info, warning or error (default info)"),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``fdrouter`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fdrouter",
        description="fdrouter: a FastDeploy-compatible LLM inference router.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the router until SIGINT/SIGTERM",
        description="Run the router. Instances register with POST /register or are given with "
        "--worker-urls / --register-config. Flags override values from --config.",
        epilog=f"policies: {', '.join(available_policies())}",
    )
    serve.add_argument("--config", metavar="FILE", help="YAML config (FastDeploy Go router key names)")
    serve.add_argument("--register-config", metavar="FILE", help="YAML file with 'instances:', a list of /register bodies")
    serve.add_argument("--worker-urls", nargs="+", metavar="URL", default=None,
                       help="static mixed instances, e.g. http://127.0.0.1:8000")
    serve.add_argument("--splitwise", action="store_true", default=None,
                       help="PD disaggregation: one prefill and one decode instance per request")
    for flag, field, kind, help_text in _SERVE_FLAGS:
        serve.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    return parser


def config_from_args(args: argparse.Namespace) -> RouterConfig:
    """Defaults, then the YAML file, then flags: one RouterConfig."""
    values = load_config_file(args.config) if args.config else {}
    for _, field, _, _ in _SERVE_FLAGS:
        value = getattr(args, field)
        if value is not None:
            values[field] = value
    if args.splitwise:
        values["splitwise"] = True
    if values.get("api_key") is None and os.environ.get("FDROUTER_API_KEY"):
        values["api_key"] = os.environ["FDROUTER_API_KEY"]
    instances = []
    if args.register_config:
        instances.extend(load_instances_file(args.register_config))
    if args.worker_urls:
        instances.extend(parse_worker_urls(args.worker_urls))
    values["instances"] = tuple(instances)
    if str(values.get("log_level", "info")).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log-level must be debug, info, warning or error, got {values['log_level']!r}")
    return RouterConfig(**values)


def _run(coro_factory) -> None:
    try:
        import uvloop  # optional: fdrouter[speed]
    except ImportError:
        asyncio.run(coro_factory())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro_factory())


async def _serve(config: RouterConfig) -> None:
    from .server import serve_forever

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_forever(config, stop=stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fdrouter`` console script and ``python -m fdrouter``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "serve":
        try:
            config = config_from_args(args)
        except (ConfigError, TypeError) as exc:
            print(f"fdrouter: error: {exc}", file=sys.stderr)
            return 2
        logging.basicConfig(
            level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            _run(lambda: _serve(config))
        except OSError as exc:  # e.g. the port is taken
            print(f"fdrouter: error: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
