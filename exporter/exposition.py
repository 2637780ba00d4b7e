"""Assemble /metrics from the runners' pre-rendered snapshots.

The exporter's own families (sparki_up and friends) depend on the clock (a snapshot
goes stale with time), so they are built per scrape; they are a handful of series.
The adapter families, possibly tens of thousands of series, were rendered when their
snapshot was made; here they are only joined, and the joined bytes are cached until a
snapshot changes.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Sequence

from . import __version__
from .adapter import Reason
from .metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    RenderedFamily,
    merge_exposition,
    render_families,
)
from .poller import TargetRunner

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def exporter_families(runners: Sequence[TargetRunner], now: float) -> list[Metric]:
    """The common families of every adapter, from the runners' current state."""
    labels = ["adapter", "target"]
    up = GaugeMetricFamily(
        "sparki_up",
        "1 when the last poll of the target succeeded and is fresh, else 0",
        labels=labels,
    )
    duration = GaugeMetricFamily(
        "sparki_poll_duration_seconds", "How long the last poll took", labels=labels
    )
    success = GaugeMetricFamily(
        "sparki_last_poll_success_timestamp_seconds",
        "Unix time of the last successful poll",
        labels=labels,
    )
    errors = CounterMetricFamily(
        "sparki_poll_errors", "Failed polls by reason", labels=[*labels, "reason"]
    )
    reason = GaugeMetricFamily(
        "sparki_last_poll_error_reason",
        "1 for the reason the target is down; absent while it is up",
        labels=[*labels, "reason"],
    )
    interval = GaugeMetricFamily(
        "sparki_poll_interval_seconds", "Configured interval between polls", labels=labels
    )
    for runner in runners:
        st = runner.state
        key = [st.adapter, st.name]
        is_up = st.exported_up(now)
        up.add_metric(key, 1.0 if is_up else 0.0)
        interval.add_metric(key, st.interval)
        if st.last_duration is not None:
            duration.add_metric(key, st.last_duration)
        if st.last_success is not None:
            success.add_metric(key, st.last_success)
        for r in Reason:
            errors.add_metric([*key, r.value], float(st.errors.get(r.value, 0)))
        if st.polled and not is_up:
            why = st.last_reason.value if st.last_reason is not None else Reason.TIMEOUT.value
            reason.add_metric([*key, why], 1.0)
    build = GaugeMetricFamily(
        "sparki_exporter_build_info", "Always 1; the exporter's version", labels=["version"]
    )
    build.add_metric([__version__], 1.0)
    return [up, duration, success, errors, reason, interval, build]


# A gzip member header: deflate, no name, no mtime (a body must not differ by clock).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
GZIP_LEVEL = 5


def deflate_final(data: bytes) -> bytes:
    """A raw deflate stream of ``data`` that ends with the final block."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)


def gzip_join(prefix: bytes, tail: bytes, tail_deflated: bytes) -> bytes:
    """One gzip member of ``prefix + tail``, compressing only ``prefix``.

    ``tail_deflated`` is ``deflate_final(tail)``, made once per snapshot. The prefix is
    compressed and sync-flushed (byte-aligned, not final), so the tail's stream can
    follow it: its back-references never reach before its own start. The result is a
    single member, which every client decodes (browsers stop after the first member of
    a multi-member gzip). Only the CRC still reads the tail, at memory speed.
    """
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_SYNC_FLUSH)
    crc = zlib.crc32(tail, zlib.crc32(prefix))
    size = (len(prefix) + len(tail)) & 0xFFFFFFFF
    return _GZIP_HEADER + head + tail_deflated + struct.pack("<II", crc, size)


class _Body:
    """The joined adapter families of one set of snapshots, plain and (lazily) deflated."""

    __slots__ = ("_deflated", "blocks", "body")

    def __init__(self, body: bytes, blocks: object) -> None:
        self.body = body
        # Keeping the blocks alive keeps their ids from being reused by newer snapshots,
        # which would make a stale cache key match.
        self.blocks = blocks
        self._deflated: bytes | None = None

    def deflated(self) -> bytes:
        if self._deflated is None:
            self._deflated = deflate_final(self.body)
        return self._deflated


class Exposition:
    """Builds /metrics bodies; caches the adapter part until a snapshot changes.

    The adapter part is also compressed once per snapshot, so a gzip scrape costs the
    compression of the exporter's own few series, not of tens of thousands.
    """

    def __init__(self, runners: Sequence[TargetRunner]) -> None:
        self.runners = list(runners)
        self._cache: dict[tuple[object, ...], _Body] = {}

    def _adapter_blocks(
        self, now: float
    ) -> tuple[tuple[object, ...], list[tuple[RenderedFamily, ...]]]:
        blocks = []
        key: list[object] = []
        for runner in self.runners:
            st = runner.state
            if st.fresh(now):
                blocks.append(st.rendered)
                key.append(id(st.rendered))
            else:
                key.append(None)
        return tuple(key), blocks

    def _parts(self, openmetrics: bool, now: float | None) -> tuple[bytes, _Body]:
        now = time.monotonic() if now is None else now
        own = render_families(exporter_families(self.runners, now))
        key, blocks = self._adapter_blocks(now)
        entry = self._cache.get((openmetrics, *key))
        if entry is None:
            entry = _Body(merge_exposition(blocks, openmetrics, eof=openmetrics), blocks)
            # Keep only the newest body per format: older ones can never be asked again.
            self._cache = {k: v for k, v in self._cache.items() if k[0] != openmetrics}
            self._cache[(openmetrics, *key)] = entry
        return merge_exposition([own], openmetrics, eof=False), entry

    def render(
        self, openmetrics: bool = False, now: float | None = None, prefix: bytes = b""
    ) -> bytes:
        """The full exposition in the requested format, after ``prefix``."""
        own, entry = self._parts(openmetrics, now)
        return prefix + own + entry.body

    def render_gzip(
        self, openmetrics: bool = False, now: float | None = None, prefix: bytes = b""
    ) -> bytes:
        """``render(...)`` as one gzip member, reusing the adapter part's compression."""
        own, entry = self._parts(openmetrics, now)
        return gzip_join(prefix + own, entry.body, entry.deflated())
