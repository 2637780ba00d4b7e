"""Command line: ``sparki-exporter`` (serve), ``check-config``, ``healthcheck``, ``generate``.

Only the standard library is imported at module level: ``healthcheck`` runs every 30 s
in the container (Docker's HEALTHCHECK) and must stay cheap, so pydantic, YAML, aiohttp
and the adapters are imported by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import logging
import signal
import ssl
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .config import RootConfig
    from .shard import Shard

log = logging.getLogger("sparki")
EXIT_CONFIG = 2
DEFAULT_LISTEN = ":9840"
# The spellings logs.setup accepts (kept here so building the parser imports nothing).
LEVELS = ("debug", "info", "warn", "warning", "error")


def _collectors_help() -> str:
    """The collectors every adapter has, for --help (read from the driver-free catalogs)."""
    from .adapters import all_collectors

    lines = [
        "collectors (switch with --collector.NAME / --no-collector.NAME, or",
        "--collector.ADAPTER.NAME; a target's own `collectors:` key wins):",
    ]
    for adapter, specs in all_collectors().items():
        for spec in specs:
            state = "on" if spec.default else "off"
            lines.append(f"  {adapter}.{spec.name:<18} [{state}] {spec.description}")
    return "\n".join(lines)


def _listing(items: list[str]) -> str:
    """The items as an English list: a, b and c."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _serve_parser() -> argparse.ArgumentParser:
    from .adapters import env_variables, servers
    from .connlimits import ServerLimits  # standard library only

    env = [var for variables in env_variables().values() for var in variables]
    p = argparse.ArgumentParser(
        prog="sparki-exporter",
        # Wrapped here: the raw formatter (which keeps the epilog's table) does not.
        description=textwrap.fill(
            f"Prometheus exporter for {_listing(list(servers().values()))}. "
            "Subcommands: check-config FILE, healthcheck, generate.",
            width=80,
        ),
        epilog=_collectors_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        "--config.file",
        dest="config",
        metavar="FILE",
        help="YAML config; without it, targets come from the environment: "
        f"{_listing(env)} (each with its adapter's other variables, see the README)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        action="append",
        metavar="HOST:PORT",
        help=f"repeat to listen on several addresses (default {DEFAULT_LISTEN})",
    )
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS and basic auth, in the exporter-toolkit web config format",
    )
    p.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable POST /-/reload (SIGHUP always reloads)",
    )
    p.add_argument(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        type=_duration_flag,
        default=ServerLimits.read_header_timeout,
        metavar="DURATION",
        help="close a connection that has not sent its request headers within this (default 5s)",
    )
    p.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=_duration_flag,
        default=ServerLimits.idle_timeout,
        metavar="DURATION",
        help="close a kept-alive connection idle for this long (default 5s)",
    )
    p.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_count_flag,
        default=ServerLimits.max_connections,
        metavar="N",
        help="concurrent HTTP connections; idle ones make room for new ones, beyond it "
        "503 (default 512, lowered to fit the file descriptor limit)",
    )
    p.add_argument(
        "--web.probe-rate",
        dest="probe_rate",
        type=_rate_flag,
        default=ServerLimits.probe_rate,
        metavar="PER_SECOND",
        help="polls per second /probe may start per target, after a burst of 5; "
        "beyond, 429 (default 1; 0: no limit)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        choices=LEVELS,
        help="warn and warning are the same level (Prometheus tools spell it warn)",
    )
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])
    p.add_argument(
        "--shard.count",
        dest="shard_count",
        type=int,
        metavar="N",
        help="split the configured targets between N replicas (see docs/operations.md)",
    )
    p.add_argument(
        "--shard.index",
        dest="shard_index",
        metavar="I|auto",
        help="this replica's shard, 0..N-1; auto: the StatefulSet ordinal of the host name "
        "modulo N",
    )
    p.add_argument("--version", action="version", version=f"sparki-exporter {__version__}")
    return p


def _duration_flag(text: str) -> float:
    from .config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate_flag(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1e6:  # also refuses nan and inf
        raise argparse.ArgumentTypeError("must be a number of polls per second, 0 for no limit")
    return value


def _count_flag(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 1000000")
    return int(text)


def check_config(argv: Sequence[str]) -> int:
    """Validate a config file: exit 0, or print every problem with its path and exit 2."""
    p = argparse.ArgumentParser(prog="sparki-exporter check-config")
    p.add_argument("file")
    p.add_argument("--web.config.file", dest="web_config", metavar="FILE")
    args = p.parse_args(argv)
    from .config import ConfigError, load

    failed = False
    # Every problem of both files in one run: validation does not stop at the first.
    try:
        config = load(args.file)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{args.file}: {line}", file=sys.stderr)
        failed = True
    if args.web_config:
        from .webconfig import load_web_config

        try:
            web = load_web_config(args.web_config)
        except ConfigError as exc:
            for line in exc.lines():
                print(f"{args.web_config}: {line}", file=sys.stderr)
            failed = True
        else:
            print(
                f"{args.web_config}: ok, TLS {'on' if web.ssl_context else 'off'}, "
                f"basic auth {'on' if web.auth_enabled else 'off'}"
            )
    if failed:
        return EXIT_CONFIG
    targets = config.targets()
    print(
        f"{args.file}: ok, {len(targets)} target(s): "
        + ", ".join(f"{a}/{t.name}" for a, t in targets)
    )
    return 0


def _report_reload_crash(task: asyncio.Task[object]) -> None:
    """Exporter.reload reports its own failures; anything escaping it is logged here,
    never left as asyncio's "Task exception was never retrieved"."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("reload failed", exc_info=exc)


# Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep garbage collection out of the poll and scrape tails.

    A PostgreSQL poll with thousands of statements, or a scrape rendering thousands of
    series, allocates tens of thousands of containers, so CPython's defaults run a full
    collection every poll or two, and each one walks every object the process holds:
    the modules, classes and functions of three drivers (botocore alone is ~100k).
    Those pauses (~20 ms here) were the poll p95 (docs/benchmarks.md). Freezing what
    start-up created takes it out of every later collection, and a larger young
    generation makes collections rarer; reference cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _serve(
    args: argparse.Namespace,
    config: RootConfig,
    addresses: list[tuple[str | None, int]],
    shard: Shard | None,
) -> int:
    from .config import ConfigError
    from .connlimits import ServerLimits
    from .service import Exporter
    from .tracing import from_environment as tracing_from_environment
    from .webconfig import LoadedWebConfig, load_web_config

    web_config: LoadedWebConfig | None = None
    if args.web_config:
        try:
            web_config = load_web_config(args.web_config)
        except ConfigError as exc:
            for line in exc.lines():
                log.error(
                    "invalid web configuration",
                    extra={"kv": {"file": args.web_config, "problem": line}},
                )
            return EXIT_CONFIG
    exporter = Exporter(
        config,
        args.telemetry_path,
        web_config=web_config,
        loader=partial(_load_with_flags, args.config, args.collector_flags)
        if args.config
        else None,
        config_file=args.config,
        enable_lifecycle=args.enable_lifecycle,
        observer=tracing_from_environment(),
        log_flags=(args.log_level, args.log_format),
        shard=shard,
        limits=ServerLimits(
            read_header_timeout=args.read_header_timeout,
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
            probe_rate=args.probe_rate,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading the configuration and the web config")
        task: asyncio.Task[object] = asyncio.ensure_future(exporter.reload_all())
        reloads.add(task)
        task.add_done_callback(reloads.discard)
        task.add_done_callback(_report_reload_crash)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await exporter.start(*addresses[0], more=addresses[1:])
    except OSError as exc:
        log.error("cannot listen", extra={"kv": {"error": exc.strerror or str(exc)}})
        await exporter.stop()
        return 1
    tune_gc()
    await stop.wait()
    log.info("shutting down")
    for task in reloads:
        task.cancel()
    await exporter.stop()
    return 0


def _collector_flags(argv: Sequence[str]) -> tuple[dict[str, dict[str, bool]], list[str]]:
    """Split ``--[no-]collector.X`` off the command line (argparse cannot know every
    collector's name up front); exit 2 naming the flag for an unknown collector."""
    from .adapters import all_collectors
    from .collector import parse_flags

    switches, rest, problems = parse_flags(argv, all_collectors())
    if problems:
        for line in problems:
            print(f"sparki-exporter: error: {line}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    return switches, rest


def with_collector_flags(config: RootConfig, flags: dict[str, dict[str, bool]]) -> RootConfig:
    """The config with command-line collector switches over the file's top-level ones."""
    if not flags:
        return config
    merged = {a: dict(s) for a, s in config.collectors.items()}
    for adapter, switches in flags.items():
        merged.setdefault(adapter, {}).update(switches)
    return config.model_copy(update={"collectors": merged})


def _load_with_flags(path: str, flags: dict[str, dict[str, bool]]) -> RootConfig:
    from .config import load

    return with_collector_flags(load(path), flags)


def serve(argv: Sequence[str]) -> int:
    flags, argv = _collector_flags(argv)
    args = _serve_parser().parse_args(argv)
    args.collector_flags = flags
    from .config import ConfigError, from_environment
    from .logs import setup
    from .shard import parse as parse_shard

    setup(args.log_level or "info", args.log_format or "logfmt")
    try:
        config = _load_with_flags(args.config, flags) if args.config else from_environment()
        config = with_collector_flags(config, flags)
    except ConfigError as exc:
        where = {"file": args.config} if args.config else {}
        for line in exc.lines():
            log.error("invalid configuration", extra={"kv": {**where, "problem": line}})
        return EXIT_CONFIG
    setup(args.log_level or config.log.level, args.log_format or config.log.format)
    from .listen import parse_listen_address

    try:
        addresses = [parse_listen_address(a) for a in args.listen or [DEFAULT_LISTEN]]
        shard = parse_shard(args.shard_index, args.shard_count)
    except ValueError as exc:
        log.error(str(exc))
        return EXIT_CONFIG
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args, config, addresses, shard))
    return 0


def healthcheck(argv: Sequence[str]) -> int:
    """Exit 0 when the exporter on this host answers /healthz (for Docker's HEALTHCHECK).

    Tries HTTP, then HTTPS without verifying the certificate (it is our own process on
    loopback). A 401 counts as alive: with basic auth on, /healthz asks for credentials
    like every path, and the HTTP server answering is what liveness means; so does a
    429 from the web config's rate_limit.
    """
    p = argparse.ArgumentParser(prog="sparki-exporter healthcheck")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN)
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    from .listen import parse_listen_address

    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if host in (None, "", "0.0.0.0", "::"):  # noqa: S104 (a listen address, not a bind)
        host = "127.0.0.1" if host != "::" else "::1"
    shown = f"[{host}]" if ":" in host else host
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    last = ""
    for scheme in ("http", "https"):
        url = f"{scheme}://{shown}:{port}/healthz"
        try:
            with urllib.request.urlopen(  # noqa: S310 (fixed scheme and path)
                url, timeout=args.timeout, context=insecure if scheme == "https" else None
            ) as resp:
                if resp.status == 200:
                    return 0
                last = f"{url}: HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 429):  # basic auth on, or the web config's rate_limit
                return 0
            last = f"{url}: HTTP {exc.code}"
        except (OSError, ValueError, http.client.HTTPException) as exc:
            last = f"{url}: {getattr(exc, 'reason', None) or exc}"
    print(f"unhealthy: {last}", file=sys.stderr)
    return 1


def generate(argv: Sequence[str]) -> int:
    """Write rules, dashboards and deploy files from rules/thresholds.yaml."""
    from .generate import main as generate_main

    return generate_main(argv)


COMMANDS = {"check-config": check_config, "healthcheck": healthcheck, "generate": generate}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        sys.exit(COMMANDS[argv[0]](argv[1:]))
    sys.exit(serve(argv))


if __name__ == "__main__":
    main()
