"""The running exporter: runners for every configured target plus the web server.

Reload (SIGHUP, or ``POST /-/reload`` with ``--web.enable-lifecycle``) reads the
configuration again and, only if all of it is valid, swaps it in target by target: a
target whose adapter, settings and effective schedule are unchanged keeps its runner
(its connection, its counters, its series); new targets get new runners; removed ones
are stopped and their connections closed. A configuration that does not validate is
refused with every problem logged, and the running one is kept.

The web config (``--web.config.file``) is reloaded on SIGHUP and ``/-/reload`` too,
and whenever it or a certificate, key or CA file it names changes on disk (polled
every WEB_CONFIG_POLL_SECONDS; see :meth:`Exporter.reload_web`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from .adapters import load as load_adapter
from .config import ConfigError, RootConfig, TargetConfig
from .connlimits import ConnectionGuard, ServerLimits, throttle_accept_errors
from .listen import parse_listen_address
from .logs import kv, register_secrets, setup
from .poller import PollObserver, TargetRunner
from .resolver import install as install_resolver
from .shard import Shard, owner
from .web import WebState, make_app
from .webconfig import (
    Fingerprint,
    LoadedWebConfig,
    ServerTLS,
    WebSecurity,
    fingerprint,
    load_web_config,
)

log = logging.getLogger("sparki.service")

RunnerKey = tuple[str, TargetConfig, float, float, float, tuple[tuple[str, bool], ...]]
__all__ = ["Exporter", "parse_listen_address", "runner_key"]


def runner_key(adapter: str, target: TargetConfig, config: RootConfig) -> RunnerKey:
    """What must be equal for a target's runner to survive a reload."""
    interval = config.interval_for(target)
    return (
        adapter,
        target,
        interval,
        config.timeout_for(target),
        interval * config.stale_after_intervals,
        tuple(sorted(config.collectors_for(adapter).items())),
    )


class Exporter:
    """Owns the runners and the HTTP site; start() and stop() bracket its life."""

    # How often the web config's files are checked for a change. A stat() of four files
    # on a thread every few seconds: a rotated certificate is served within seconds, and
    # no handshake ever waits for the disk (exporter-toolkit re-reads the files at every
    # handshake; in Python that would be blocking reads on the event loop).
    WEB_CONFIG_POLL_SECONDS = 5.0

    def __init__(
        self,
        config: RootConfig,
        telemetry_path: str = "/metrics",
        *,
        web_config: LoadedWebConfig | None = None,
        loader: Callable[[], RootConfig] | None = None,
        enable_lifecycle: bool = False,
        observer: PollObserver | None = None,
        log_flags: tuple[str | None, str | None] = (None, None),
        shard: Shard | None = None,
        limits: ServerLimits | None = None,
        config_file: str | None = None,
    ) -> None:
        self.config = config
        self.config_file = config_file
        self.shard = shard
        self.limits = limits or ServerLimits()
        self.observer = observer
        self.loader = loader
        self.log_flags = log_flags
        self.web_config = web_config
        register_secrets(config.secrets())
        self._keys: dict[TargetRunner, RunnerKey] = {}
        mine, elsewhere = self._split(config)
        self.runners = [self._new_runner(section, target, config) for section, target in mine]
        self.web = WebState(self.runners)
        self.web.elsewhere = elsewhere
        if shard is not None:
            self.web.extra_families = shard.families()
        self.security = WebSecurity.of(web_config)
        self.tls: ServerTLS | None = None
        if web_config is not None:
            self.web.web_reload_success = True
            if web_config.ssl_context is not None:
                self.tls = ServerTLS(web_config.ssl_context)
        self.app = make_app(
            self.web,
            telemetry_path,
            security=self.security,
            reload=self.reload_all if enable_lifecycle else None,
            probe_rate=self.limits.probe_rate,
        )
        self._web_seen: Fingerprint | None = None
        self._web_watch: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.Server] = []
        self.guard: ConnectionGuard | None = None
        self._reload_lock = asyncio.Lock()
        # Reading the config (files, secrets) on a thread of its own: never queued
        # behind other blocking work.
        self._reload_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sparki-reload"
        )
        self.port: int | None = None
        self._process_task: asyncio.Task[None] | None = None

    def _split(
        self, config: RootConfig
    ) -> tuple[list[tuple[str, TargetConfig]], dict[str, list[tuple[str, int]]]]:
        """This shard's targets, and the others' (name -> [(adapter, owning shard)])."""
        mine: list[tuple[str, TargetConfig]] = []
        elsewhere: dict[str, list[tuple[str, int]]] = {}
        for section, target in config.targets():
            if self.shard is None or self.shard.owns(section, target.name):
                mine.append((section, target))
            else:
                where = owner(section, target.name, self.shard.count)
                elsewhere.setdefault(target.name, []).append((section, where))
        return mine, elsewhere

    def _new_runner(self, section: str, target: TargetConfig, config: RootConfig) -> TargetRunner:
        spec = load_adapter(section)
        runner = TargetRunner(spec, target, config, self.observer)
        self._keys[runner] = runner_key(spec.name, target, config)
        return runner

    @property
    def scheme(self) -> str:
        tls = self.web_config is not None and self.web_config.ssl_context is not None
        return "https" if tls else "http"

    async def start(
        self,
        host: str | None,
        port: int,
        *,
        more: Sequence[tuple[str | None, int]] = (),
    ) -> None:
        """Listen on ``host:port`` and on every address of ``more``, then start polling.

        Several addresses (``--web.listen-address`` repeated, as exporter-toolkit allows)
        share one application and one connection guard (connlimits.py), so the cap on
        connections holds across all of them. ``self.port`` is the first address's port
        (the one picked by the system when it is 0). An address that cannot be bound
        raises OSError naming it, before any target is polled.
        """
        limits = self.limits
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=limits.idle_timeout,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        ssl_context = self.tls.listener if self.tls is not None else None
        loop = asyncio.get_running_loop()
        throttle_accept_errors(loop)
        install_resolver(loop)
        self.guard = ConnectionGuard(self._runner.server, limits)
        bound: list[str] = []
        for i, (h, p) in enumerate([(host, port), *more]):
            shown = f"[{h}]" if h and ":" in h else (h or "*")
            # Our own listener instead of web.TCPSite: the guard sits between the socket
            # and aiohttp's protocol. A TLS handshake gets the header-read timeout too.
            try:
                server = await loop.create_server(
                    self.guard,
                    h,
                    p,
                    ssl=ssl_context,
                    ssl_handshake_timeout=limits.read_header_timeout if ssl_context else None,
                    backlog=self.guard.batch,
                    reuse_address=True,
                )
            except OSError as exc:
                raise OSError(exc.errno, f"{shown}:{p}: {exc.strerror or exc}") from exc
            self._servers.append(server)
            sockets = list(server.sockets or ())
            actual = sockets[0].getsockname()[1] if sockets else p
            if i == 0:
                self.port = actual
            bound.append(f"{shown}:{actual}")
        for runner in self.runners:
            runner.start()
        self._process_task = asyncio.create_task(self.web.process.run())
        if self.web_config is not None and self.web_config.path:
            self._web_seen = await loop.run_in_executor(
                self._reload_executor, fingerprint, self.web_config.files
            )
            self._web_watch = asyncio.ensure_future(self._watch_web())
        log.info(
            "listening",
            extra=kv(
                address=",".join(bound),
                targets=len(self.runners),
                **(
                    {"shard": f"{self.shard.index}/{self.shard.count}"}
                    if self.shard is not None
                    else {}
                ),
                tls=ssl_context is not None,
                basic_auth=bool(self.web_config and self.web_config.auth_enabled),
                rate_limit=self.security.limiter is not None,
                max_connections=self.guard.cap,
                read_header_timeout=f"{limits.read_header_timeout:g}s",
                idle_timeout=f"{limits.idle_timeout:g}s",
            ),
        )

    async def reload(self) -> tuple[bool, list[str]]:
        """Load the configuration again and apply it; (ok, problems)."""
        async with self._reload_lock:
            if self.loader is None:
                problems = ["no configuration file to reload (started without --config)"]
                log.error("reload refused", extra=kv(problem=problems[0]))
                self.web.reload_success = False
                return False, problems
            try:
                loop = asyncio.get_running_loop()
                config = await loop.run_in_executor(self._reload_executor, self.loader)
            except ConfigError as exc:
                problems = exc.lines()
                where = {"file": self.config_file} if self.config_file else {}
                for line in problems:
                    log.error(
                        "reload refused, keeping the running configuration",
                        extra=kv(**where, problem=line),
                    )
                self.web.reload_success = False
                return False, problems
            except Exception as exc:  # a bug in validation: still a failed reload, reported
                problems = [f"the configuration could not be loaded ({type(exc).__name__})"]
                log.exception(
                    "reload refused, keeping the running configuration",
                    extra=kv(problem=problems[0]),
                )
                self.web.reload_success = False
                return False, problems
            await self.apply(config)
            return True, []

    async def reload_all(self) -> tuple[bool, list[str]]:
        """SIGHUP and ``/-/reload``: the configuration, then the web config.

        Started without --config but with a web config, only the web config is reloaded
        (the targets from the environment have nothing to re-read).
        """
        if self.web_config is None or not self.web_config.path:
            return await self.reload()
        ok, problems = (True, []) if self.loader is None else await self.reload()
        web_ok, web_problems = await self.reload_web()
        return ok and web_ok, problems + [f"web config: {line}" for line in web_problems]

    async def reload_web(self) -> tuple[bool, list[str]]:
        """Read the web config and its files again and put them in force; (ok, problems).

        New connections get the new certificate (see ServerTLS); requests get the new
        users, headers, rate limit and allowed SANs from the next one on. A file that
        does not validate, or a certificate that does not load, keeps the running web
        config: one log line, and sparki_exporter_web_config_last_reload_successful 0.
        """
        current = self.web_config
        if current is None or not current.path:
            return True, []
        path = current.path
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            # The files' state before they are read: what the watcher compares with next,
            # so a reload by SIGHUP is not repeated by the watcher, and a change made
            # while reading is still seen.
            before = await loop.run_in_executor(self._reload_executor, fingerprint, current.files)
            self._web_seen = before
            try:
                new = await loop.run_in_executor(self._reload_executor, load_web_config, path)
                if (new.ssl_context is None) != (current.ssl_context is None):
                    raise ConfigError(
                        [
                            (
                                "tls_server_config",
                                "turning TLS on or off needs a restart (the listeners "
                                "are plain HTTP or HTTPS for their life)",
                            )
                        ]
                    )
            except ConfigError as exc:
                problems = exc.lines()
                log.error(
                    "web config reload refused, keeping the running one",
                    extra=kv(file=path, problems="; ".join(problems)),
                )
                self.web.web_reload_success = False
                return False, problems
            except Exception as exc:  # a bug in validation: a failed reload, reported
                problems = [f"the web config could not be loaded ({type(exc).__name__})"]
                log.exception(
                    "web config reload refused, keeping the running one",
                    extra=kv(file=path, problems=problems[0]),
                )
                self.web.web_reload_success = False
                return False, problems
            if self.tls is not None and new.ssl_context is not None:
                self.tls.update(new.ssl_context, new.config.tls_server_config.openssl_ciphers)
            fresh = WebSecurity.of(new, self.security)
            if self.security.auth is not None and self.security.auth is not fresh.auth:
                self.security.auth.close()
            # Field by field into the object the middleware holds.
            self.security.auth = fresh.auth
            self.security.headers = fresh.headers
            self.security.limiter = fresh.limiter
            self.security.allowed_sans = fresh.allowed_sans
            self.web_config = new
            if new.files != current.files:  # other files named: watch those from now on
                self._web_seen = await loop.run_in_executor(
                    self._reload_executor, fingerprint, new.files
                )
            self.web.web_reload_success = True
            self.web.web_reload_success_time = time.time()
            log.info(
                "web config reloaded",
                extra=kv(
                    file=path,
                    tls=new.ssl_context is not None,
                    basic_auth=new.auth_enabled,
                    rate_limit=fresh.limiter is not None,
                ),
            )
            return True, []

    async def _watch_web(self) -> None:
        """Reload the web config when one of its files changes (one attempt per change:
        a broken file is logged once, not at every poll)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.WEB_CONFIG_POLL_SECONDS)
            web_config = self.web_config
            if web_config is None:
                return
            try:
                seen = await loop.run_in_executor(
                    self._reload_executor, fingerprint, web_config.files
                )
            except RuntimeError:  # the executor is shut down: stopping
                return
            if seen == self._web_seen:
                continue
            log.info("web config files changed, reloading", extra=kv(file=web_config.path))
            await self.reload_web()

    async def apply(self, config: RootConfig) -> None:
        """Swap in a validated configuration, keeping the runners of unchanged targets."""
        # Old and new secrets while the old targets stop (their last log lines may
        # carry an old one), then only the new ones: the list is replaced, not grown.
        register_secrets([*self.config.secrets(), *config.secrets()])
        if config.log != self.config.log:
            level, fmt = self.log_flags
            setup(level or config.log.level, fmt or config.log.format)
        spare = list(self.runners)
        runners: list[TargetRunner] = []
        added: list[TargetRunner] = []
        mine, elsewhere = self._split(config)
        for section, target in mine:
            key = runner_key(section, target, config)
            match = next((r for r in spare if self._keys[r] == key), None)
            if match is not None:
                spare.remove(match)
                runners.append(match)
            else:
                runner = self._new_runner(section, target, config)
                runners.append(runner)
                added.append(runner)
        self.config = config
        self.runners = runners
        self.web.set_runners(runners)
        self.web.elsewhere = elsewhere
        if self._runner is not None:  # started: the new runners poll from now on
            for runner in added:
                runner.start()
        await asyncio.gather(*(r.stop() for r in spare), return_exceptions=True)
        for runner in spare:
            self._keys.pop(runner, None)
        register_secrets(config.secrets())
        self.web.reload_success = True
        self.web.reload_success_time = time.time()
        log.info(
            "configuration reloaded",
            extra=kv(
                kept=len(runners) - len(added),
                added=_names(added),
                removed=_names(spare),
            ),
        )

    async def stop(self) -> None:
        """Stop polling, close every pool and the HTTP server, each under a deadline."""
        if self._web_watch is not None:
            self._web_watch.cancel()
            await asyncio.gather(self._web_watch, return_exceptions=True)
        await asyncio.gather(*(r.stop() for r in self.runners), return_exceptions=True)
        if self._process_task is not None:
            self._process_task.cancel()
        for server in self._servers:
            server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.guard is not None:
            self.guard.close_all()
        self._reload_executor.shutdown(wait=False, cancel_futures=True)
        shutdown: Any = getattr(self.observer, "shutdown", None)
        if callable(shutdown):
            try:
                await asyncio.wait_for(asyncio.to_thread(shutdown), 5.0)
            except Exception as exc:  # flushing spans is best effort
                log.warning("tracing shutdown failed", extra=kv(error=str(exc)))
        log.info("stopped")


def _names(runners: list[TargetRunner]) -> str:
    return ",".join(f"{r.state.adapter}/{r.state.name}" for r in runners) or "-"
