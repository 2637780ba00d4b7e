"""HTTP endpoints: /metrics, /probe, /healthz, /readyz, /-/reload and a landing page.

No handler but /probe touches a target: they read the runners' state, so a scrape
costs the same whether every server is healthy or every server hangs. /probe polls one
configured target on demand (see probe.py). With a web config (webconfig.py), every
path, /healthz included, needs the basic-auth credentials, as with exporter-toolkit.
"""

from __future__ import annotations

import gzip
import html
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import __version__
from .exposition import GZIP_LEVEL, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition
from .logs import kv
from .metrics import GaugeMetricFamily, Metric, merge_exposition, render_families
from .poller import TargetRunner
from .probe import NotThisShard, Prober, ProbeRateLimited, ProbeRequestError
from .probe import deadline as probe_deadline
from .probe import render as render_probe
from .probe import select as select_target
from .process import ProcessMetrics
from .webconfig import AuthBusy, BasicAuth, WebSecurity

log = logging.getLogger("sparki.web")


class _QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed request (a port scan, a TLS hello on the plain port)
    as an error with a traceback; they are answered with 400 and are not our errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            log.debug("malformed request refused", extra=kv(error=str(exc).splitlines()[0]))
            return False
        return True


_QUIET = _QuietBadRequests()
logging.getLogger("aiohttp.server").addFilter(_QUIET)


class WebState:
    """What the handlers read. Reload replaces the runner list whole; handlers see it next."""

    def __init__(self, runners: Sequence[TargetRunner]) -> None:
        self.runners: list[TargetRunner] = list(runners)
        self.exposition = Exposition(self.runners)
        self.reload_success: bool = True
        self.reload_success_time: float = time.time()
        # The same pair for --web.config.file; None: no web config, no series.
        self.web_reload_success: bool | None = None
        self.web_reload_success_time: float = time.time()
        # Sharded: targets of the configuration that other shards poll (name ->
        # [(adapter, shard)]), so /probe can say where to go; and this shard's info.
        self.elsewhere: dict[str, list[tuple[str, int]]] = {}
        self.extra_families: list[Metric] = []
        # process_* and python_* of the exporter, rendered in the background (process.py).
        self.process = ProcessMetrics()

    def set_runners(self, runners: Sequence[TargetRunner]) -> None:
        self.runners = list(runners)
        self.exposition.runners = self.runners

    def reload_families(self) -> list[GaugeMetricFamily]:
        ok = GaugeMetricFamily(
            "sparki_exporter_config_last_reload_successful",
            "1 when the last configuration reload succeeded (or none was tried), else 0",
        )
        ok.add_metric([], 1.0 if self.reload_success else 0.0)
        when = GaugeMetricFamily(
            "sparki_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration was loaded",
        )
        when.add_metric([], self.reload_success_time)
        if self.web_reload_success is None:
            return [ok, when]
        web_ok = GaugeMetricFamily(
            "sparki_exporter_web_config_last_reload_successful",
            "1 when the last web config (--web.config.file) reload succeeded (or none was "
            "tried), else 0 and the previous web config is still in force",
        )
        web_ok.add_metric([], 1.0 if self.web_reload_success else 0.0)
        web_when = GaugeMetricFamily(
            "sparki_exporter_web_config_last_reload_success_timestamp_seconds",
            "Unix time the web config in force (TLS certificates included) was loaded",
        )
        web_when.add_metric([], self.web_reload_success_time)
        return [ok, when, web_ok, web_when]


STATE = web.AppKey("state", WebState)
EXPOSITION = web.AppKey("exposition", Exposition)
ReloadHook = Callable[[], Awaitable[tuple[bool, list[str]]]]


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


# The landing page reloads itself: it is what people leave open during an incident.
LANDING_REFRESH_SECONDS = 10


def landing_page(runners: Sequence[TargetRunner], telemetry_path: str) -> str:
    """A small HTML page: every target, its state and its last error.

    It refreshes itself every LANDING_REFRESH_SECONDS and links to the metrics and to
    each target's /probe (which polls that target now: a link, never an automatic fetch).
    """
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
        probe = "/probe?" + urllib.parse.urlencode({"target": st.name, "adapter": st.adapter})
        probe_cell = (
            f"<td><a href='{html.escape(probe, quote=True)}'>poll now</a></td>"
            if telemetry_path != "/probe"
            else "<td></td>"
        )
        rows.append(
            "<tr>"
            f"<td>{html.escape(st.adapter)}</td><td>{html.escape(st.name)}</td>"
            f'<td style="color:{color};font-weight:bold">{status}</td>'
            f"<td>{html.escape(reason)}</td>"
            f"<td>{html.escape(st.last_error or '')}</td>"
            f"<td>{_ago(st.last_success)}</td><td>{duration}</td>"
            f"<td>{st.interval:g}s / {st.timeout:g}s</td>"
            f"{probe_cell}"
            "</tr>"
        )
    path = html.escape(telemetry_path)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{LANDING_REFRESH_SECONDS}'>"
        "<title>Sparki storage exporter</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>Sparki storage exporter</h1><p>Version {html.escape(__version__)} &middot; "
        f"<a href='{path}'>Metrics</a> &middot; <a href='/healthz'>Health</a> &middot; "
        "<a href='/readyz'>Readiness</a> &middot; "
        f"refreshes every {LANDING_REFRESH_SECONDS} s</p>"
        "<table><tr><th>Adapter</th><th>Target</th><th>State</th><th>Reason</th>"
        "<th>Last error</th><th>Last success</th><th>Last poll</th><th>Interval / timeout</th>"
        "<th>Probe</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def _encode(
    request: web.Request,
    render: Callable[[bool], bytes],
    render_gzip: Callable[[bool], bytes] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body in the format and encoding the request asks for.

    ``render_gzip``, when given, produces the gzip body itself (from cached pieces);
    otherwise the plain body is compressed here.
    """
    openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
    ctype = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    headers = {"Content-Type": ctype, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        headers["Content-Encoding"] = "gzip"
        if render_gzip is not None:
            return render_gzip(openmetrics), headers
        return gzip.compress(render(openmetrics), compresslevel=GZIP_LEVEL), headers
    return render(openmetrics), headers


def _bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message + "\n")


def make_app(
    runners: Sequence[TargetRunner] | WebState,
    telemetry_path: str = "/metrics",
    *,
    auth: BasicAuth | None = None,
    headers: Mapping[str, str] | None = None,
    security: WebSecurity | None = None,
    reload: ReloadHook | None = None,
    probe_rate: float = 1.0,
) -> web.Application:
    """The aiohttp application serving the exporter's endpoints.

    ``security`` (rate limit, client certificate SANs, basic auth, response headers) is
    read on every request, so a web config reload that replaces its fields applies from
    the next request; ``auth`` and ``headers`` are shorthands for a fixed one.
    ``reload`` enables ``POST /-/reload`` (off unless given); ``probe_rate`` is the
    polls per second /probe may start per target (0: no limit).
    """
    state = runners if isinstance(runners, WebState) else WebState(runners)
    prober = Prober(rate=probe_rate)
    if security is None:
        security = WebSecurity(auth=auth, headers=dict(headers or {}))
    guard = security

    async def metrics(request: web.Request) -> web.Response:
        def own(openmetrics: bool) -> bytes:
            return merge_exposition(
                [
                    render_families([*state.reload_families(), *state.extra_families]),
                    state.process.rendered,
                ],
                openmetrics,
                eof=False,
            )

        body, response_headers = _encode(
            request,
            lambda om: state.exposition.render(om, prefix=own(om)),
            lambda om: state.exposition.render_gzip(om, prefix=own(om)),
        )
        return web.Response(body=body, headers=response_headers)

    async def probe(request: web.Request) -> web.Response:
        try:
            keys = [key for key, _ in request.query.items()]
            runner = select_target(request.query, keys, state.runners, state.elsewhere)
            timeout = probe_deadline(
                request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), runner.state.timeout
            )
        except NotThisShard as exc:
            # 421 Misdirected Request: configured, but another shard polls it.
            return web.Response(status=421, text=f"{exc}\n")
        except ProbeRequestError as exc:
            return _bad_request(str(exc))
        except (UnicodeError, ValueError):
            return _bad_request("the query string is not valid: /probe?target=NAME")
        try:
            result = await prober.probe(runner, timeout)
        except ProbeRateLimited as exc:
            return web.Response(
                status=429, text=f"{exc}\n", headers={"Retry-After": str(exc.retry_after)}
            )
        if result.error is not None:
            log.debug(
                "probe failed",
                extra=kv(
                    adapter=runner.state.adapter,
                    target=runner.state.name,
                    reason=result.error.reason.value,
                    error=result.error.message,
                ),
            )
        body, response_headers = _encode(
            request, lambda openmetrics: render_probe(runner, result, openmetrics)
        )
        return web.Response(body=body, headers=response_headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        pending = [f"{r.state.adapter}/{r.state.name}" for r in state.runners if not r.state.polled]
        if pending:
            return web.Response(
                status=503, text="waiting for first poll: " + ", ".join(pending) + "\n"
            )
        return web.Response(text="ready\n")

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=landing_page(state.runners, telemetry_path), content_type="text/html"
        )

    async def do_reload(request: web.Request) -> web.Response:
        assert reload is not None
        ok, problems = await reload()
        if ok:
            return web.Response(text="configuration reloaded\n")
        return web.Response(
            status=400,
            text="reload refused, the running configuration is kept:\n"
            + "".join(f"{p}\n" for p in problems),
        )

    @web.middleware
    async def protect(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Cheapest refusal first: the rate limit before the certificate check, and both
        # before a bcrypt check.
        limiter = guard.limiter
        if limiter is not None:
            wait = limiter.take()
            if wait > 0:
                return web.Response(
                    status=429,
                    text="too many requests (web config rate_limit)\n",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if guard.allowed_sans:
            transport = request.transport
            peercert = transport.get_extra_info("peercert") if transport is not None else None
            if not guard.san_allowed(peercert):
                response = web.Response(
                    status=403, text="client certificate not allowed (client_allowed_sans)\n"
                )
                response.force_close()
                return response
        checker = guard.auth
        if checker is not None:
            try:
                ok = await checker.check(request.headers.get("Authorization"))
            except AuthBusy:
                return web.Response(
                    status=503,
                    text="too many password checks waiting; retry in a second\n",
                    headers={"Retry-After": "1"},
                )
            if not ok:
                return web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="sparki-exporter", charset="UTF-8"'},
                )
        return await handler(request)

    app = web.Application(middlewares=[protect])

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if guard.headers:
            response.headers.update(guard.headers)

    app.on_response_prepare.append(add_headers)

    async def close_prober(app: web.Application) -> None:
        await prober.close()
        guard.close()

    app.on_cleanup.append(close_prober)
    app.router.add_get(telemetry_path, metrics)
    if telemetry_path != "/probe":
        app.router.add_get("/probe", probe)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    if reload is not None:
        app.router.add_post("/-/reload", do_reload)
    app[STATE] = state
    app[EXPOSITION] = state.exposition
    return app
