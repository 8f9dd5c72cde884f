"""Command line: ``fdrouter serve`` (the blocking wrapper around RouterServer)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import yaml

from .config import ConfigError, RouterConfig, load_config_file, load_instances_file, parse_worker_urls
from .logs import configure_logging
from .policies import available_policies
from .sim.cli import add_simulate_parser, run_simulate

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
    ("--metrics-scrape-interval-secs", "metrics_scrape_interval_secs", float,
     "background /metrics scrape interval for the remote_metrics policy (default 1)"),
    ("--api-key", "api_key", str, "require 'Authorization: Bearer KEY' on inference endpoints "
     "(default: $FDROUTER_API_KEY, else none)"),
    ("--admin-api-key", "admin_api_key", str, "require 'Authorization: Bearer KEY' on /register, /deregister "
     "and /v1/abort_requests (default: $FDROUTER_ADMIN_API_KEY, else none)"),
    ("--max-instances", "max_instances", int, "most instances that may be registered (default 1024)"),
    ("--first-byte-timeout-secs", "first_byte_timeout_secs", float,
     "time for an instance to start answering, 0 = off (default 600)"),
    ("--stream-idle-timeout-secs", "stream_idle_timeout_secs", float,
     "longest gap between two chunks of an answer, 0 = off (default 600)"),
    ("--retry-max-retries", "retry_max_retries", int,
     "retries on another instance for requests that failed before any byte reached the client (default 2)"),
    ("--retry-initial-backoff-secs", "retry_initial_backoff_secs", float, "first retry delay (default 0.05)"),
    ("--retry-max-backoff-secs", "retry_max_backoff_secs", float, "largest retry delay (default 1)"),
    ("--breaker-failure-threshold", "breaker_failure_threshold", int,
     "consecutive failures that open an instance's circuit, 0 = no breaker (default 5)"),
    ("--breaker-success-threshold", "breaker_success_threshold", int,
     "successes in half-open that close the circuit (default 2)"),
    ("--breaker-cooldown-secs", "breaker_cooldown_secs", float, "open-circuit cooldown before trials (default 30)"),
    ("--max-concurrent-requests", "max_concurrent_requests", int,
     "generation requests served at once, 0 = no admission control (default 0)"),
    ("--queue-size", "queue_size", int, "requests that may wait for a slot before 429 (default 100)"),
    ("--queue-timeout-secs", "queue_timeout_secs", float, "longest wait for a slot before 429 (default 60)"),
    ("--shutdown-grace-period-secs", "shutdown_grace_period_secs", float,
     "on SIGTERM/SIGINT, time in-flight requests get to finish (default 30)"),
    ("--log-level", "log_level", str, "debug, info, warning or error (default info)"),
    ("--log-format", "log_format", str, "text or json (default text)"),
]


def _policy_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as YAML (numbers, booleans, strings)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


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
    serve.add_argument("--disable-retries", action="store_true", default=None,
                       help="never retry a failed request on another instance")
    serve.add_argument("--policy-option", dest="policy_option", action="append", type=_policy_option,
                       metavar="KEY=VALUE", default=None,
                       help="policy option, repeatable, e.g. cache_threshold=0.5 or session_header=x-user")
    for flag, field, kind, help_text in _SERVE_FLAGS:
        serve.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    add_simulate_parser(sub)
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
    if args.disable_retries:
        values["disable_retries"] = True
    if args.policy_option:
        values["policy_options"] = {**values.get("policy_options", {}), **dict(args.policy_option)}
    for field, env in (("api_key", "FDROUTER_API_KEY"), ("admin_api_key", "FDROUTER_ADMIN_API_KEY")):
        if values.get(field) is None and os.environ.get(env):
            values[field] = os.environ[env]
    instances = []
    if args.register_config:
        instances.extend(load_instances_file(args.register_config))
    if args.worker_urls:
        instances.extend(parse_worker_urls(args.worker_urls))
    values["instances"] = tuple(instances)
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
        configure_logging(config.log_level, config.log_format, secrets=[config.api_key, config.admin_api_key])
        try:
            _run(lambda: _serve(config))
        except OSError as exc:  # e.g. the port is taken
            print(f"fdrouter: error: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    if args.command == "simulate":
        return run_simulate(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
