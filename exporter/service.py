"""The running exporter: runners for every configured target plus the web server."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .adapters import by_name
from .config import RootConfig
from .logs import kv, register_secrets
from .poller import TargetRunner
from .web import make_app

log = logging.getLogger("sparki.service")


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """Split ``HOST:PORT``, ``:PORT`` or ``[v6]:PORT`` as Prometheus exporters accept them."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address {address!r}: expected HOST:PORT, e.g. :9840")
    host = host.strip("[]")
    return (host or None), int(port)


class Exporter:
    """Owns the runners and the HTTP site; start() and stop() bracket its life."""

    def __init__(self, config: RootConfig, telemetry_path: str = "/metrics") -> None:
        self.config = config
        register_secrets(config.secrets())
        adapters = by_name()
        self.runners = [
            TargetRunner(adapters[section], target, config) for section, target in config.targets()
        ]
        self.app = make_app(self.runners, telemetry_path)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str | None, port: int) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        for runner in self.runners:
            runner.start()
        log.info(
            "listening",
            extra=kv(address=f"{host or '*'}:{self.port}", targets=len(self.runners)),
        )

    async def stop(self) -> None:
        """Stop polling, close every pool and the HTTP server, each under a deadline."""
        await asyncio.gather(*(r.stop() for r in self.runners), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("stopped")
