"""Command line: ``fdrouter serve`` (the blocking wrapper around RouterServer)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import yaml

from .config import FIELD_TYPES, SETTINGS, ConfigError, RouterConfig, default_of
from .config_loader import ConfigFile, load_instances_file, parse_worker_urls, read_config_file
from .fastdeploy_config import resolve_soft_options
from .instances import InstanceInfo
from .logs import LogRetention, configure_logging
from .policies import available_policies, policy_options
from .replay.cli import add_replay_parser, run_replay
from .sim.cli import add_simulate_parser, run_simulate

log = logging.getLogger(__name__)

# Flags come from RouterConfig's setting declarations (config.SETTINGS): one per setting, named
# like its YAML key. Two are special: --policy-option (repeatable KEY=VALUE) and the static
# instances (--worker-urls, --register-config).
_FLAG_TYPES = {"int": int, "float": float, "str": str, "str | None": str}
_CUSTOM = frozenset({"policy_options", "instances"})


def serve_flags() -> list[str]:
    """Every ``fdrouter serve`` flag derived from a setting, in declaration order."""
    return [spec.flag for name, spec in SETTINGS.items() if name not in _CUSTOM]


def _metavar(name: str) -> str:
    kind = FIELD_TYPES[name]
    if kind == "int":
        return "N"
    if kind == "float":
        return "SECS" if name.endswith("_secs") else "X"
    return "KEY" if SETTINGS[name].secret else "TEXT"


def _help(name: str) -> str:
    spec = SETTINGS[name]
    if spec.env:
        return f"{spec.help} (default: ${spec.env}, else none)"
    default = default_of(name)
    if FIELD_TYPES[name] == "bool":
        return spec.help
    return f"{spec.help} (default {default if default not in (None, '') else 'none'})"


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
    serve.add_argument("--policy-option", dest="policy_option", action="append", type=_policy_option,
                       metavar="KEY=VALUE", default=None,
                       help="policy option, repeatable, e.g. cache_threshold=0.5 or session_header=x-user")
    for name, spec in SETTINGS.items():
        if name in _CUSTOM:
            continue
        kind = FIELD_TYPES[name]
        if kind == "bool":
            serve.add_argument(spec.flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=_help(name))
        else:
            serve.add_argument(spec.flag, dest=name, type=_FLAG_TYPES[kind], default=None, metavar=_metavar(name),
                               help=_help(name))
    add_simulate_parser(sub)
    add_replay_parser(sub)
    return parser


def config_from_args(args: argparse.Namespace) -> RouterConfig:
    """Defaults, then the YAML file, then flags: one RouterConfig."""
    return build_config(args)[0]


def build_config(args: argparse.Namespace) -> tuple[RouterConfig, list[str]]:
    """The RouterConfig, and the start-up warnings about configuration keys accepted but not used."""
    file = read_config_file(args.config) if args.config else ConfigFile()
    values = dict(file.values)
    for name in SETTINGS:
        value = getattr(args, name, None)
        if name not in _CUSTOM and value is not None:
            values[name] = value
    if args.policy_option:
        values["policy_options"] = {**values.get("policy_options", {}), **dict(args.policy_option)}
    for name, spec in SETTINGS.items():
        if spec.env and values.get(name) is None and os.environ.get(spec.env):
            values[name] = os.environ[spec.env]
    instances: list[InstanceInfo] = []
    for path in (file.register_path, args.register_config):
        if path is not None:
            instances.extend(load_instances_file(path))
    if args.worker_urls:
        instances.extend(parse_worker_urls(args.worker_urls))
    values["instances"] = tuple(instances)
    warnings = list(file.warnings)
    if file.soft_options:
        splitwise = values.get("splitwise", default_of("splitwise"))
        names = ("prefill_policy", "decode_policy") if splitwise else ("policy",)
        policies = [values.get(name, default_of(name)) for name in names]
        accepted = {p: set(policy_options(p)) for p in policies if p in available_policies()}
        explicit = values.get("policy_options", {})
        extra, unused = resolve_soft_options(file.soft_options, explicit, accepted)
        values["policy_options"] = {**extra, **explicit}
        warnings += unused
    return RouterConfig(**values), warnings


def _run(coro_factory) -> None:
    try:
        import uvloop  # optional: fdrouter[speed]
    except ImportError:
        asyncio.run(coro_factory())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro_factory())


def _run_workers(config: RouterConfig) -> int:
    from .workers.supervisor import Supervisor

    async def supervise() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await Supervisor(config, config.worker_count).run(stop)

    try:
        return asyncio.run(supervise())
    except OSError as exc:  # the port is taken
        print(f"fdrouter: error: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


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
            config, warnings = build_config(args)
            configure_logging(config.log_level, config.log_format, secrets=[config.api_key, config.admin_api_key],
                              output=config.log_output, file=config.log_file,
                              retention=LogRetention(config.log_max_age_days, config.log_max_total_size_mb,
                                                     config.log_cleanup_interval_secs))
        except (ConfigError, TypeError) as exc:
            print(f"fdrouter: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # the log file cannot be opened
            print(f"fdrouter: error: cannot write the log file {config.log_file}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        for line in warnings:
            log.warning("config: %s", line)
        if config.worker_count > 1:
            return _run_workers(config)
        try:
            _run(lambda: _serve(config))
        except OSError as exc:  # e.g. the port is taken
            print(f"fdrouter: error: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    if args.command == "simulate":
        return run_simulate(args)
    if args.command == "replay":
        return run_replay(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_config", "build_parser", "config_from_args", "main", "serve_flags"]
