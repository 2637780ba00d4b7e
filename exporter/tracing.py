"""OpenTelemetry: one span per poll, exported over OTLP/HTTP when the standard variables ask.

Tracing is on only when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not true, and
``OTEL_TRACES_EXPORTER`` is not ``none``). Otherwise nothing of OpenTelemetry is
imported: the SDK costs nothing to a deployment that does not use it.

The exporter reads the rest of the standard variables itself (headers, timeout,
compression, certificates, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).
Only the ``http/protobuf`` protocol is shipped; a ``grpc`` request is logged and
served over HTTP.

Each poll, scheduled or on demand (``/probe``), becomes one span named
``poll <adapter>`` with the attributes ``sparki.adapter``, ``sparki.target``,
``sparki.outcome`` (``success`` or the failure reason), ``sparki.poll.duration_seconds``
and ``sparki.poll.kind`` (``scheduled`` or ``probe``); a failed poll has status ERROR
with the (redacted) error message. Spans are batched and sent from a background
thread, so a slow or absent collector never delays a poll or a scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .logs import kv
from .poller import PollEvent

log = logging.getLogger("sparki.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class PollTracer:
    """A poll observer that turns every :class:`PollEvent` into a span."""

    def __init__(self, span_exporter: Any = None) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._kind = SpanKind.INTERNAL
        self._status = Status
        self._error = StatusCode.ERROR
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "sparki-exporter"}))
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(
            BatchSpanProcessor(span_exporter if span_exporter is not None else OTLPSpanExporter())
        )
        self.tracer = self.provider.get_tracer("sparki-exporter", __version__)

    def __call__(self, event: PollEvent) -> None:
        start = int(event.start * 1e9)
        outcome = "success" if event.error is None else event.error.reason.value
        span = self.tracer.start_span(
            f"poll {event.adapter}",
            kind=self._kind,
            start_time=start,
            attributes={
                "sparki.adapter": event.adapter,
                "sparki.target": event.target,
                "sparki.outcome": outcome,
                "sparki.poll.duration_seconds": event.duration,
                "sparki.poll.kind": event.kind,
            },
        )
        if event.error is not None:
            span.set_status(self._status(self._error, event.error.message))
        span.end(end_time=start + int(event.duration * 1e9))

    def shutdown(self) -> None:
        """Send what is queued (bounded by the exporter's timeout) and stop."""
        self.provider.shutdown()


def from_environment(env: Mapping[str, str] | None = None) -> PollTracer | None:
    """A tracer when the OTLP variables are set, else None (and no import at all)."""
    env = os.environ if env is None else env
    if not wanted(env):
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol and protocol != "http/protobuf":
        log.warning(
            "only the http/protobuf OTLP protocol is supported; using it",
            extra=kv(requested=protocol),
        )
    try:
        tracer = PollTracer()
    except ImportError as exc:
        log.error(
            "OTLP tracing requested but OpenTelemetry is not installed; polls are not traced",
            extra=kv(
                error=str(exc),
                fix="pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http",
            ),
        )
        return None
    endpoint = urlsplit(next(env[n] for n in ENDPOINT_VARIABLES if env.get(n, "").strip()))
    shown = f"{endpoint.scheme}://{endpoint.hostname or ''}" + (
        f":{endpoint.port}" if endpoint.port else ""
    )  # never the userinfo or query of the URL
    log.info("tracing polls over OTLP/HTTP", extra=kv(endpoint=shown))
    return tracer
