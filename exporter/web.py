"""HTTP endpoints: /metrics, /healthz, /readyz and a landing page for people.

No handler touches a target: they read the runners' state, so a scrape costs the
same whether every server is healthy or every server hangs.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from aiohttp import web

from . import __version__
from .exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition
from .poller import TargetRunner

EXPOSITION = web.AppKey("exposition", Exposition)


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header asks for OpenMetrics (as Prometheus does when enabled)."""
    return any(
        part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(",")
    )


def accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    when = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({time.time() - ts:.0f}s ago)"


def landing_page(runners: Sequence[TargetRunner], telemetry_path: str) -> str:
    """A small HTML page: every target, its state and its last error."""
    now = time.monotonic()
    rows = []
    for r in runners:
        st = r.state
        if not st.polled:
            status, color = "pending", "#888"
        elif st.exported_up(now):
            status, color = "up", "#1a7f37"
        elif st.up:
            status, color = "stale", "#b35900"
        else:
            status, color = "down", "#cf222e"
        reason = st.last_reason.value if st.last_reason and status != "up" else ""
        duration = f"{st.last_duration * 1000:.1f} ms" if st.last_duration is not None else ""
        rows.append(
            "<tr>"
            f"<td>{html.escape(st.adapter)}</td><td>{html.escape(st.name)}</td>"
            f'<td style="color:{color};font-weight:bold">{status}</td>'
            f"<td>{html.escape(reason)}</td>"
            f"<td>{html.escape(st.last_error or '')}</td>"
            f"<td>{_ago(st.last_success)}</td><td>{duration}</td>"
            f"<td>{st.interval:g}s / {st.timeout:g}s</td>"
            "</tr>"
        )
    path = html.escape(telemetry_path)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sparki storage exporter</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>Sparki storage exporter</h1><p>Version {html.escape(__version__)} &middot; "
        f"<a href='{path}'>Metrics</a> &middot; <a href='/healthz'>Health</a> &middot; "
        "<a href='/readyz'>Readiness</a></p>"
        "<table><tr><th>Adapter</th><th>Target</th><th>State</th><th>Reason</th>"
        "<th>Last error</th><th>Last success</th><th>Last poll</th><th>Interval / timeout</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def make_app(runners: Sequence[TargetRunner], telemetry_path: str = "/metrics") -> web.Application:
    """The aiohttp application serving the exporter's endpoints."""
    exposition = Exposition(runners)

    async def metrics(request: web.Request) -> web.Response:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        ctype = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body = exposition.render_gzip(openmetrics)
            headers = {"Content-Type": ctype, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        else:
            body = exposition.render(openmetrics)
            headers = {"Content-Type": ctype, "Vary": "Accept-Encoding"}
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        pending = [f"{r.state.adapter}/{r.state.name}" for r in runners if not r.state.polled]
        if pending:
            return web.Response(
                status=503, text="waiting for first poll: " + ", ".join(pending) + "\n"
            )
        return web.Response(text="ready\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=landing_page(runners, telemetry_path), content_type="text/html")

    app = web.Application()
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    app[EXPOSITION] = exposition
    return app
