"""OpenTelemetry: a span per poll over OTLP/HTTP when the variables say so, nothing otherwise."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fixtures_core import free_port
from fixtures_pg import PgCluster
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devstack.exporter import exporter_argv
from exporter.tracing import from_environment, wanted


class Receiver:
    """A minimal OTLP/HTTP trace receiver: decodes every request with opentelemetry-proto."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert request.headers["Content-Type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(body)
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "status": span.status.code,
                            "message": span.status.message,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


def start_exporter_process(
    tmp_path: Path, config: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], int]:
    cfg = tmp_path / "c.yml"
    cfg.write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        exporter_argv(cfg, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
    )
    return proc, port


async def test_each_poll_is_a_span_sent_over_otlp_http(
    otlp_receiver: Receiver, pg_primary: PgCluster, tmp_path: Path
) -> None:
    pg_primary.ensure_monitor_role()
    closed = free_port()  # nothing listens there: the poll fails with reason connect
    config = (
        "poll_interval: 1s\npoll_timeout: 800ms\npostgres:\n"
        f"  - name: good\n    dsn: {pg_primary.dsn(user='sparki_monitor')}\n"
        f"  - name: bad\n    dsn: postgresql://x@127.0.0.1:{closed}/postgres\n"
    )
    proc, port = start_exporter_process(
        tmp_path,
        config,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        },
    )
    try:

        def spans(target: str, outcome: str | None = None, kind: str = "scheduled") -> list:
            return [
                s
                for s in otlp_receiver.spans
                if s["attributes"].get("sparki.target") == target
                and s["attributes"].get("sparki.poll.kind") == kind
                and (outcome is None or s["attributes"]["sparki.outcome"] == outcome)
            ]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(spans("good", "success")) >= 2 and spans("bad", "connect"):
                break
            assert proc.poll() is None, proc.communicate()[1]
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"spans not received: {otlp_receiver.spans[:5]}")

        good = spans("good", "success")[0]
        assert good["name"] == "poll postgres"
        assert good["attributes"]["sparki.adapter"] == "postgres"
        assert good["status"] != 2  # STATUS_CODE_ERROR
        duration = good["attributes"]["sparki.poll.duration_seconds"]
        assert 0 < duration < 0.8 + 1.0
        assert good["end"] - good["start"] == pytest.approx(duration * 1e9, abs=1e3)
        assert good["resource"]["service.name"] == "sparki-exporter"
        assert good["resource"]["deployment.environment"] == "test"
        assert good["scope"] == "sparki-exporter"

        bad = spans("bad", "connect")[0]
        assert bad["status"] == 2  # STATUS_CODE_ERROR
        assert bad["message"]  # the classified, redacted error message

        # An on-demand poll is traced too, as kind "probe".
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/probe?target=good", timeout=10):
            pass
        deadline = time.monotonic() + 20
        while not spans("good", "success", kind="probe") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert spans("good", "success", kind="probe")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "tracing polls over OTLP/HTTP" in err
    assert "Traceback" not in err


def test_nothing_is_imported_or_sent_without_the_variables(tmp_path: Path) -> None:
    assert not wanted({})
    assert not wanted({"OTEL_EXPORTER_OTLP_HEADERS": "x=y"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert from_environment({}) is None
    code = (
        "import sys, exporter.cli, exporter.service, exporter.tracing, exporter.web\n"
        "assert exporter.tracing.from_environment({}) is None\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path.cwd()
    )
    assert done.returncode == 0, done.stderr
