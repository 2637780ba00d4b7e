"""The exporter's own process metrics (process_*, python_*), as every exporter has.

Users alert on an exporter that leaks memory or file descriptors with the same
``process_resident_memory_bytes`` / ``process_open_fds`` rules they use for
postgres_exporter and redis_exporter. prometheus_client's collectors read /proc; that
is cheap, but a scrape must never do I/O, so a background task reads and renders them
every few seconds and /metrics joins the ready bytes. Their own registry keeps them
out of any global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from .logs import kv
from .metrics import RenderedFamily, render_families

log = logging.getLogger("sparki.process")

REFRESH_SECONDS = 5.0


class ProcessMetrics:
    """Rendered process families, refreshed by :meth:`run` in the background."""

    def __init__(self, period: float = REFRESH_SECONDS) -> None:
        self.period = period
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        self.rendered: tuple[RenderedFamily, ...] = ()
        self.refresh()

    def refresh(self) -> None:
        """Read the process' state now and keep it rendered for the next scrapes."""
        try:
            self.rendered = render_families(self._registry.collect())
        except Exception as exc:  # /proc unreadable (not Linux, say): keep the last reading
            log.warning("process metrics unavailable", extra=kv(error=str(exc)))

    async def run(self) -> None:
        """Refresh every ``period`` seconds until cancelled."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.period)
                self.refresh()
