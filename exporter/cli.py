"""Command line: ``sparki-exporter`` (serve) and ``sparki-exporter check-config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, RootConfig, from_environment, load
from .logs import setup

log = logging.getLogger("sparki")
EXIT_CONFIG = 2


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sparki-exporter",
        description="Prometheus exporter for PostgreSQL, Redis/Valkey and S3/MinIO. "
        "Subcommands: check-config FILE.",
    )
    p.add_argument(
        "--config",
        "--config.file",
        dest="config",
        metavar="FILE",
        help="YAML config; without it, targets come from PG_*, REDIS_*, MINIO_* variables",
    )
    p.add_argument("--web.listen-address", dest="listen", default=":9840", metavar="HOST:PORT")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    p.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])
    p.add_argument("--version", action="version", version=f"sparki-exporter {__version__}")
    return p


def check_config(argv: Sequence[str]) -> int:
    """Validate a config file: exit 0, or print every problem with its path and exit 2."""
    p = argparse.ArgumentParser(prog="sparki-exporter check-config")
    p.add_argument("file")
    args = p.parse_args(argv)
    try:
        config = load(args.file)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{args.file}: {line}", file=sys.stderr)
        return EXIT_CONFIG
    targets = config.targets()
    print(
        f"{args.file}: ok, {len(targets)} target(s): "
        + ", ".join(f"{a}/{t.name}" for a, t in targets)
    )
    return 0


async def _serve(config: RootConfig, host: str | None, port: int, telemetry_path: str) -> int:
    from .service import Exporter

    exporter = Exporter(config, telemetry_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await exporter.start(host, port)
    except OSError as exc:
        log.error(
            "cannot listen",
            extra={"kv": {"address": f"{host or ''}:{port}", "error": exc.strerror}},
        )
        await exporter.stop()
        return 1
    await stop.wait()
    log.info("shutting down")
    await exporter.stop()
    return 0


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    setup(args.log_level or "info", args.log_format or "logfmt")
    try:
        config = load(args.config) if args.config else from_environment()
    except ConfigError as exc:
        for line in exc.lines():
            log.error("invalid configuration", extra={"kv": {"problem": line}})
        return EXIT_CONFIG
    setup(args.log_level or config.log.level, args.log_format or config.log.format)
    from .service import parse_listen_address

    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        log.error(str(exc))
        return EXIT_CONFIG
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(config, host, port, args.telemetry_path))
    return 0


def generate(argv: Sequence[str]) -> int:
    """Write rules, dashboards and deploy files from rules/thresholds.yaml."""
    from .generate import main as generate_main

    return generate_main(argv)


COMMANDS = {"check-config": check_config, "generate": generate}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        sys.exit(COMMANDS[argv[0]](argv[1:]))
    sys.exit(serve(argv))


if __name__ == "__main__":
    main()
