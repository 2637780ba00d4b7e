"""Bad input: property tests of the config loader and the reply parsers, odd HTTP requests.

Every parser either returns a result or raises its own clear error (ConfigError,
PollError, ValueError subclasses with a message); never another exception, never a
hang (hypothesis's per-example deadline catches one). Every endpoint answers odd
requests with 4xx, never 500.
"""

from __future__ import annotations

import asyncio
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_pg import PgCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.adapter import PollError, Reason
from exporter.adapters.redis import latency as redis_latency
from exporter.adapters.redis import replies as redis_replies
from exporter.adapters.s3 import minio_format as minio
from exporter.config import MAX_DEPTH, ConfigError, RootConfig, load, validate

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # ms per example: a hang fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the config loader ----------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "postgres",
        "redis",
        "s3",
        "name",
        "dsn",
        "url",
        "bucket",
        "poll_interval",
        "poll_timeout",
        "stale_after_intervals",
        "log",
        "level",
        "password",
        "password_file",
        "statement_buckets",
        "canary",
        "cluster",
        "seed_nodes",
        "endpoint_url",
        "minio",
        "cloudwatch",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["15s", "1m30s", "500ms", "0s", "-1s", "${X}", "${X:-5s}", "$$", "primary"]),
    st.sampled_from(["postgresql://u@h:5432/db", "redis://h:6379", "rediss://h", "unix:///x"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=10)), children, max_size=6),
    ),
    max_leaves=40,
)


def assert_promises_kept(config: RootConfig) -> None:
    """What a config that validated promises the rest of the exporter."""
    targets = config.targets()
    assert targets, "a valid config has at least one target"
    for section in config.sections():
        names = [t.name for t in getattr(config, section)]
        assert len(names) == len(set(names)), f"duplicate names in {section}"
    for _, target in targets:
        assert 0 < config.timeout_for(target) < config.interval_for(target)


@FUZZ
@given(TREES)
def test_validate_raises_only_config_errors(tree: Any) -> None:
    data = tree if isinstance(tree, dict) else {"postgres": tree}
    try:
        result = validate(data, {"X": "1s"})
    except ConfigError as exc:
        assert exc.problems and all(isinstance(m, str) and m for _, m in exc.problems)
    else:
        assert_promises_kept(result)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["postgres", "redis", "s3"]),
        st.lists(st.dictionaries(KEYS, SCALARS, max_size=6), max_size=3),
        min_size=1,
    )
)
def test_validate_target_lists(data: dict[str, Any]) -> None:
    try:
        validate(data, {})
    except ConfigError:
        pass


VALID = """poll_interval: 15s
poll_timeout: 5s
postgres:
  - name: primary
    dsn: postgresql://monitor@db:5432/postgres
    password: ${PG_PASSWORD:-x}
redis:
  - name: cache
    url: redis://cache:6379
s3:
  - name: artifacts
    bucket: sparki-artifacts
    endpoint_url: http://minio:9000
"""
_TMP = Path(tempfile.mkdtemp(prefix="sparki-fuzz-"))


def _load_text(data: bytes) -> None:
    path = _TMP / "c.yml"
    path.write_bytes(data)
    try:
        result = load(path, {})
    except ConfigError as exc:
        assert exc.problems
    else:
        assert_promises_kept(result)


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_load_truncated_config(cut: int) -> None:
    _load_text(VALID[:cut].encode())


@FUZZ
@given(st.text(alphabet=string.printable + "{}[]&*!|>%@`'\"\t\n-:#$", max_size=300))
def test_load_arbitrary_text(text: str) -> None:
    _load_text(text.encode())


@FUZZ
@given(st.binary(max_size=200))
def test_load_arbitrary_bytes(data: bytes) -> None:
    _load_text(data)


@FUZZ
@given(st.integers(0, len(VALID)), st.binary(min_size=1, max_size=20))
def test_load_config_with_garbage_spliced_in(at: int, junk: bytes) -> None:
    raw = VALID.encode()
    _load_text(raw[:at] + junk + raw[at:])


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("postgres:\n" + "  " * 0 + "- " * (MAX_DEPTH + 5) + "x\n", "nested"),
        (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n"
                for i in range(8)
            ),
            "more than",
        ),
    ],
)
def test_pathological_yaml_is_a_clear_error_quickly(text: str, fragment: str) -> None:
    path = _TMP / "p.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path, {})
    assert fragment in str(err.value)


# --- Redis INFO and LATENCY HISTOGRAM -------------------------------------------------------

INFO_SAMPLE = (
    "# Server\r\nredis_version:7.2.4\r\nrun_id:abc\r\nuptime_in_seconds:12\r\n"
    "# Clients\r\nconnected_clients:3\r\nmaxclients:10000\r\n# Memory\r\nused_memory:1024\r\n"
    "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n"
    "# Commandstats\r\ncmdstat_get:calls=5,usec=20,usec_per_call=4.00,rejected_calls=0\r\n"
)


@FUZZ
@given(st.text(max_size=500))
def test_parse_info_on_arbitrary_text(text: str) -> None:
    info = redis_replies.parse_info(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())
    for value in info.values():
        assert isinstance(redis_replies.parse_fields(value), dict)


@FUZZ
@given(st.integers(0, len(INFO_SAMPLE)))
def test_parse_info_truncated(cut: int) -> None:
    info = redis_replies.parse_info(INFO_SAMPLE[:cut])
    assert set(info) <= set(redis_replies.parse_info(INFO_SAMPLE)) | {
        line.partition(":")[0] for line in INFO_SAMPLE[:cut].splitlines()
    }
    assert redis_replies.as_int(info.get("used_memory")) in (0, 1, 10, 102, 1024)


RESP = st.recursive(
    st.one_of(
        st.none(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.text(max_size=12),
        st.binary(max_size=12),
        st.sampled_from(["calls", "histogram_usec", "get", "set", "1", "1024", b"calls"]),
        st.floats(allow_nan=True),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(
            st.one_of(st.text(max_size=12), st.sampled_from(["calls", "histogram_usec"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=30,
)
# Errors a reply parser may raise: its own PollError, or a ValueError/TypeError for a
# reply whose values have the wrong type; the poll classifies all of them (reason
# protocol or other) and the target is down with that reason. Anything else is a bug.
PARSER_ERRORS = (PollError, ValueError, TypeError, OverflowError)


def _latency_reply(commands: int = 3) -> list[Any]:
    reply: list[Any] = []
    for i in range(commands):
        edges = [item for edge in (1, 2, 4, 8, 16, 1024) for item in (edge, (edge + i) * 3)]
        reply += [f"cmd{i}", ["calls", 1000 + i, "histogram_usec", edges]]
    return reply


def _truncations(value: Any, cut: int) -> Any:
    """Cut every list of a reply short by ``cut`` items (a partial read, say)."""
    if isinstance(value, list):
        kept = value[: max(0, len(value) - cut)]
        return [_truncations(v, cut) for v in kept]
    return value


def _check_histogram(parsed: dict[str, tuple[int, dict[int, int]]]) -> None:
    for cmd, (calls, edges) in parsed.items():
        assert isinstance(cmd, str)
        filled = redis_latency.fill_buckets(edges, calls)
        assert list(filled) == sorted(filled), "cumulative counts went down"


@FUZZ
@given(RESP)
def test_latency_histogram_parser_on_arbitrary_replies(reply: Any) -> None:
    try:
        parsed = redis_latency.parse_latency_histogram(reply)
    except PARSER_ERRORS:
        return
    _check_histogram(parsed)


@settings(max_examples=300, deadline=2000)
@given(RESP)
def test_latency_histogram_parser_raises_only_clear_errors(reply: Any) -> None:
    try:
        redis_latency.parse_latency_histogram(reply)
    except PollError as error:
        assert error.reason is Reason.PROTOCOL
        assert "LATENCY HISTOGRAM" in str(error)


@FUZZ
@given(st.integers(0, 12), st.integers(1, 4), st.booleans())
def test_latency_histogram_parser_on_truncated_replies(
    cut: int, commands: int, resp3: bool
) -> None:
    reply: Any = _truncations(_latency_reply(commands), cut)
    if resp3:  # RESP3 maps
        reply = dict(zip(reply[0::2], reply[1::2], strict=False))
    try:
        parsed = redis_latency.parse_latency_histogram(reply)
    except PARSER_ERRORS:
        return
    _check_histogram(parsed)


def test_latency_histogram_parser_reads_a_real_shape() -> None:
    parsed = redis_latency.parse_latency_histogram(_latency_reply(1))
    assert parsed["cmd0"][0] == 1000 and parsed["cmd0"][1][1024] == 3072


@FUZZ
@given(
    st.dictionaries(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40), max_size=30),
    st.integers(-(2**40), 2**40),
)
def test_fill_buckets_is_monotone(edges: dict[int, int], calls: int) -> None:
    filled = redis_latency.fill_buckets(edges, calls)
    assert len(filled) == len(redis_latency.COMMAND_BUCKETS_USEC) + 1
    assert list(filled) == sorted(filled)


# --- the MinIO metrics parser ---------------------------------------------------------------

MINIO_SAMPLE = """# HELP minio_bucket_requests_total Total number of S3 requests
# TYPE minio_bucket_requests_total counter
minio_bucket_requests_total{api="GetObject",bucket="artifacts",server="127.0.0.1:9000"} 12
minio_bucket_requests_total{api="PutObject",bucket="artifacts",server="127.0.0.1:9000"} 3
minio_bucket_requests_4xx_errors_total{api="GetObject",bucket="artifacts"} 1
minio_bucket_traffic_received_bytes{bucket="artifacts",server="127.0.0.1:9000"} 2048
minio_bucket_usage_total_bytes{bucket="artifacts",server="127.0.0.1:9000"} 1.5e+06
minio_bucket_usage_object_total{bucket="artifacts",server="127.0.0.1:9000"} 42
go_gc_duration_seconds{quantile="0.5"} 1.2e-05 1700000000000
"""


def check_minio(text: str) -> None:
    try:
        samples = minio.parse_exposition(text)
    except minio.ExpositionError as exc:
        assert str(exc).startswith("invalid MinIO metrics exposition")
        return
    try:
        reading = minio.bucket_reading(samples, None)
    except minio.ExpositionError:
        return
    assert all(v >= 0 for v in reading.sizes.values())


@FUZZ
@given(st.text(max_size=400))
def test_minio_parser_on_arbitrary_text(text: str) -> None:
    check_minio(text)


@FUZZ
@given(st.text(alphabet='abcm_{}="\\, \t\n#0123456789.eE+-InfNa', max_size=300))
def test_minio_parser_on_exposition_like_text(text: str) -> None:
    check_minio(text)


@FUZZ
@given(st.integers(0, len(MINIO_SAMPLE)))
def test_minio_parser_on_truncated_bodies(cut: int) -> None:
    check_minio(MINIO_SAMPLE[:cut])


@FUZZ
@given(st.integers(0, len(MINIO_SAMPLE)), st.text(min_size=1, max_size=10))
def test_minio_parser_with_garbage_spliced_in(at: int, junk: str) -> None:
    check_minio(MINIO_SAMPLE[:at] + junk + MINIO_SAMPLE[at:])


def test_minio_sample_parses() -> None:
    reading = minio.bucket_reading(minio.parse_exposition(MINIO_SAMPLE), None)
    assert reading.objects["artifacts"] == 42


# --- odd HTTP requests to every endpoint ----------------------------------------------------

ENDPOINTS = ["/metrics", "/probe?target=a", "/healthz", "/readyz", "/", "/-/reload"]


async def raw_request(port: int, data: bytes) -> int | None:
    """Send raw bytes; return the response's status code (None: connection closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    if not line:
        return None
    parts = line.split()
    assert parts[0].startswith(b"HTTP/"), line
    return int(parts[1])


def request(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


ODD: list[bytes] = []
for path in ENDPOINTS:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"):
        ODD.append(request(method, path))
for target in (
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/metrics/../../../etc/passwd",
    "/metrics/..%2f..%2fetc%2fpasswd",
    "//metrics",
    "/metrics%00",
    "/metrics/",
    "/probe/../metrics",
    "/static/../../etc/shadow",
    "/%ff%fe",
    "/\\..\\..\\windows",
    "/metrics?x=%ff%fe%00",
    "/metrics?" + "a=b&" * 2000,
    "/probe?target=%ff%fe",
    "/probe?target=a%00b",
    "/probe?target=..%2f..%2fetc%2fpasswd",
    "/probe?target=" + "x" * 7000,
    "/probe?&&&=&=",
    "/probe?target",
    "/probe?target=a&target=a",
    "/probe?%zz=1",
    "/probe?target=a;adapter=postgres",
    "/readyz?" + "%" * 100,
    "/?" + "q" * 7000,
    "/" + "a" * 7000,
    "*",
    "http://evil.example/metrics",
):
    ODD.append(request("GET", target))
for headers in (
    {"Accept": "application/openmetrics-text; version=abc"},
    {"Accept": "*/*;q=foo, ;;;, application/openmetrics-text;;"},
    {"Accept": "\x01\x02\x7f"},
    {"Accept": "a" * 6000},
    {"Accept": ",,,,"},
    {"Accept-Encoding": "gzip;q=abc, br;q=-1, *;q=1e999"},
    {"Accept-Encoding": ";;;;"},
    {"X-Prometheus-Scrape-Timeout-Seconds": "1e999"},
    {"X-Prometheus-Scrape-Timeout-Seconds": "-0"},
    {"X-Prometheus-Scrape-Timeout-Seconds": ""},
    {"X-Prometheus-Scrape-Timeout-Seconds": "0x10"},
    {"Content-Length": "-1"},
    {"Content-Length": "abc"},
    {"Transfer-Encoding": "chunked, identity"},
    {"Authorization": "Basic !!!"},
    {"Range": "bytes=999999-"},
    {"Expect": "100-continue"},
):
    for path in ("/metrics", "/probe?target=a", "/"):
        ODD.append(request("GET", path, headers))
ODD += [
    b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /metrics\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 60,  # a TLS ClientHello
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 20000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\x00\x01: \xff\r\n\r\n",
    b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
    b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GARBAGE\r\n\r\n",
]


async def test_odd_requests_get_4xx_never_500(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter(
        {"poll_interval": "30s", "poll_timeout": "5s", "postgres": [pg_primary.target("a")]}
    )
    await exp.polls("postgres", "a", 1)  # ready: /readyz answers 200, not 503
    port = exp.exporter.port
    statuses: dict[int | None, int] = {}
    for data in ODD:
        try:
            status = await raw_request(port, data)
        except (ConnectionError, asyncio.IncompleteReadError):
            status = None  # the server dropped a hopeless request: fine
        statuses[status] = statuses.get(status, 0) + 1
        assert status is None or status < 500, (status, data[:120])
    # Valid-but-odd requests still succeed, and the server is healthy afterwards.
    assert (await exp.get("/healthz"))[0] == 200
    assert (await exp.get("/metrics"))[0] == 200
    assert any(s is not None and 400 <= s < 500 for s in statuses), statuses


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="#?"),
        max_size=40,
    ),
    query=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="#"),
        max_size=60,
    ),
    accept=st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=60),
)
def test_generated_requests_never_500(
    path: str, query: str, accept: str, http_target: dict[str, Any]
) -> None:
    import urllib.parse

    target = (
        "/" + urllib.parse.quote(path, safe="/%;=&") + "?" + urllib.parse.quote(query, safe="=&%;")
    )
    data = request("GET", target, {"Accept": accept, "Accept-Encoding": accept})
    loop: asyncio.AbstractEventLoop = http_target["loop"]
    future = asyncio.run_coroutine_threadsafe(raw_request(http_target["port"], data), loop)
    status = future.result(30)
    assert status is None or status < 500, (status, target, accept)


@pytest.fixture(scope="module")
def http_target(pg_primary: PgCluster) -> Any:
    """An exporter in its own thread and loop, for synchronous hypothesis tests."""
    import threading

    from exporter import config as config_mod
    from exporter.service import Exporter

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {"loop": loop}

    def run() -> None:
        asyncio.set_event_loop(loop)
        cfg = config_mod.validate(
            {"poll_interval": "30s", "poll_timeout": "5s", "postgres": [pg_primary.target("a")]},
            {},
        )
        exporter = Exporter(cfg)
        loop.run_until_complete(exporter.start("127.0.0.1", 0))
        holder["exporter"] = exporter
        holder["port"] = exporter.port
        ready.set()
        loop.run_forever()
        loop.run_until_complete(exporter.stop())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield holder
    loop.call_soon_threadsafe(loop.stop)
    thread.join(15)


def test_yaml_of_the_valid_sample_is_what_the_tests_assume() -> None:
    assert validate(yaml.safe_load(VALID), {}).targets()
