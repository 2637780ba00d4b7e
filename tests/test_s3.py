"""S3 adapter: canary, CloudWatch request/storage metrics, MinIO metrics, cost, secrets.

S3 and CloudWatch are moto in server mode over real HTTP (tests/fixtures_s3.py). moto's
limits shape a few tests: GetMetricData has no percentile statistics (latency uses
Average and Maximum here), it matches dimensions in the order they were stored (the
exporter sends BucketName then FilterId, and storage metrics exactly as ListMetrics
lists them), and it does not keep bucket metrics configurations (a bucket "has request
metrics" when CloudWatch has data for its FilterId).
"""

from __future__ import annotations

import io
import itertools
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from fixtures_core import free_port, timed
from fixtures_s3 import unique_bucket

from exporter import config as config_mod
from exporter.adapters import by_name
from exporter.adapters.s3 import minio_format as _minio
from exporter.adapters.s3 import target as s3_adapter
from exporter.config import ConfigError, GlobalConfig
from exporter.metrics import render_families

DATA = Path(__file__).parent / "data"
GIB = 2**30


def conf(*targets: dict[str, Any], interval: str = "1s", timeout: str = "0.9s") -> dict[str, Any]:
    return {"poll_interval": interval, "poll_timeout": timeout, "s3": list(targets)}


async def until(exp: Any, name: str, want: float, timeout: float = 20.0, **labels: str) -> None:
    """Wait until /metrics shows ``name{labels} == want`` (scraping all along)."""
    await exp.wait_for(lambda: _equals(exp, name, want, **labels), timeout=timeout)


def prefix() -> str:
    return f".sparki-canary/{uuid.uuid4().hex[:8]}/"


async def metric(exp: Any, name: str, **labels: str) -> float:
    """The sample's value; 0 while it does not exist yet."""
    value = await exp.value(name, **labels)
    return 0.0 if value is None else value


async def probe_counts(exp: Any, target: str) -> dict[str, dict[str, float]]:
    """Per operation: attempts, successes (histogram count) and errors by reason."""
    out: dict[str, dict[str, float]] = {}
    fams = await exp.families()
    for op in s3_adapter.PROBE_OPERATIONS:
        out[op] = {"attempts": 0.0, "ok": 0.0, "errors": 0.0}
    if "sparki_s3_probes" not in fams:
        return out
    for s in fams["sparki_s3_probes"].samples:
        if s.labels["target"] == target:
            out[s.labels["operation"]]["attempts"] = s.value
    for s in fams["sparki_s3_probe_duration_seconds"].samples:
        if s.labels["target"] == target and s.name.endswith("_count"):
            out[s.labels["operation"]]["ok"] = s.value
    for s in fams["sparki_s3_probe_errors"].samples:
        if s.labels["target"] == target:
            op = s.labels["operation"]
            out[op]["errors"] += s.value
            out[op][s.labels["reason"]] = s.value
    return out


# --- canary --------------------------------------------------------------------------------


async def test_canary_counts_every_operation_and_leaves_nothing(start_exporter, s3_server):
    pfx = prefix()
    exp = await start_exporter(conf(s3_server.target("canary", canary={"prefix": pfx})))
    await exp.wait_for(
        lambda: metric(exp, "sparki_s3_probes_total", target="canary", operation="delete"),
        timeout=20,
    )

    async def three_rounds() -> bool:
        return (await probe_counts(exp, "canary"))["delete"]["ok"] >= 3

    await exp.wait_for(three_rounds, timeout=30)
    counts = await probe_counts(exp, "canary")
    for op, c in counts.items():
        # every attempt is either observed in the histogram or counted as an error
        assert c["attempts"] == c["ok"] + c["errors"], (op, c)
        # only a very loaded machine could make a local call time out
        assert c["errors"] == c.get("timeout", 0), (op, c)
    assert counts["put"]["ok"] >= 3
    assert await exp.value("sparki_up", adapter="s3", target="canary") == 1
    assert (
        await exp.value("sparki_s3_probe_duration_seconds_bucket", operation="put", le="0.1")
        is not None
    )
    await exp.wait_for(lambda: not s3_server.keys(prefix=pfx), timeout=10)
    await exp.exporter.stop()
    assert s3_server.keys(prefix=pfx) == []


async def test_failed_steps_still_delete_and_failed_deletes_are_retried(start_exporter, s3_server):
    pfx = prefix()
    exp = await start_exporter(conf(s3_server.target("steps", canary={"prefix": pfx})))
    await exp.polls("s3", "steps", 1)
    target = exp.runner("s3", "steps").target
    await exp.wait_for(lambda: target.ctx.s3 is not None)
    s3 = target.ctx.s3
    real_get = s3.get_object

    def corrupt_get(**kwargs: Any) -> Any:
        response = real_get(**kwargs)
        response["Body"].close()
        response["Body"] = io.BytesIO(b"not what was written")
        return response

    # A GET that returns other bytes: counted as checksum, object still deleted.
    s3.get_object = corrupt_get
    await exp.wait_for(
        lambda: metric(
            exp, "sparki_s3_probe_errors_total", target="steps", operation="get", reason="checksum"
        ),
        timeout=20,
    )
    del s3.get_object
    assert await exp.value("sparki_up", adapter="s3", target="steps") == 1
    await exp.wait_for(lambda: not s3_server.keys(prefix=pfx), timeout=10)

    # DELETE failing: keys are remembered, exported as pending, and the objects stay ...
    def failing_delete(**kwargs: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "InternalError", "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            },
            "DeleteObject",
        )

    s3.delete_object = failing_delete
    await exp.wait_for(
        lambda: _at_least(exp, "sparki_s3_canary_pending_deletes", 2, target="steps"), timeout=20
    )
    assert len(s3_server.keys(prefix=pfx)) >= 2
    assert (
        await metric(
            exp, "sparki_s3_probe_errors_total", target="steps", operation="delete", reason="other"
        )
        >= 2
    )
    # ... until DELETE works again: every one of them is removed, nothing is left.
    del s3.delete_object
    await exp.wait_for(
        lambda: _equals(exp, "sparki_s3_canary_pending_deletes", 0, target="steps"), timeout=20
    )
    assert await metric(exp, "sparki_s3_canary_cleanups_total", result="deleted") >= 1
    await exp.wait_for(lambda: not s3_server.keys(prefix=pfx), timeout=10)
    await exp.exporter.stop()
    assert s3_server.keys(prefix=pfx) == []


async def _keeps_updating(exp: Any, target: str) -> None:
    """The target's canary count in /metrics goes up by two more polls."""
    before = await metric(exp, "sparki_s3_probes_total", target=target, operation="put")
    await exp.wait_for(
        lambda: _at_least(
            exp, "sparki_s3_probes_total", before + 2, target=target, operation="put"
        ),
        timeout=15,
    )


async def _at_least(exp: Any, name: str, minimum: float, **labels: str) -> bool:
    value = await exp.value(name, **labels)
    return value is not None and value >= minimum


async def _equals(exp: Any, name: str, wanted: float, **labels: str) -> bool:
    return await exp.value(name, **labels) == wanted


async def test_missing_bucket_fails_the_poll_and_recovers_when_created(
    start_exporter, s3_server, captured_logs
):
    bucket = unique_bucket("missing")
    exp = await start_exporter(
        conf(s3_server.target("nobucket", bucket=bucket, canary={"prefix": prefix()}))
    )
    await until(exp, "sparki_last_poll_error_reason", 1, target="nobucket", reason="other")
    state = exp.runner("s3", "nobucket").state
    assert await exp.value("sparki_up", adapter="s3", target="nobucket") == 0
    assert "does not exist" in (state.last_error or "")
    status, _, page = await exp.get("/")
    assert status == 200 and b"does not exist" in page

    s3_server.create_bucket(bucket)  # recovery without a restart
    await exp.wait_for(lambda: _equals(exp, "sparki_up", 1, adapter="s3", target="nobucket"))
    assert (
        await exp.value(
            "sparki_s3_probe_errors_total", target="nobucket", operation="put", reason="no_bucket"
        )
        >= 1
    )
    # one line per change, not one per poll
    lines = [x for x in captured_logs().splitlines() if "poll failed" in x and "not exist" in x]
    assert len(lines) == 1, lines


async def test_wrong_credentials_are_auth_and_right_ones_work(start_exporter, s3_auth_server):
    server = s3_auth_server
    exp = await start_exporter(
        conf(
            server.target("good", canary={"prefix": prefix()}),
            server.target(
                "badkey",
                access_key_id="AKIAWRONGWRONGWRONG1",
                secret_access_key="wrong-secret-value-1",
            ),
            server.target("badsecret", secret_access_key="wrong-secret-value-2"),
        )
    )
    await until(exp, "sparki_up", 1, adapter="s3", target="good")
    for name in ("badkey", "badsecret"):
        await until(exp, "sparki_last_poll_error_reason", 1, target=name, reason="auth")
        assert await exp.value("sparki_up", adapter="s3", target=name) == 0
        assert "credentials" in (exp.runner("s3", name).state.last_error or "")


async def test_stopped_server_is_connect_within_deadline_and_recovers(
    start_exporter, s3_server, s3_private_server
):
    server = s3_private_server
    exp = await start_exporter(
        conf(
            server.target("flaky", canary={"prefix": prefix()}),
            s3_server.target("steady", canary={"prefix": prefix()}),
        )
    )
    await exp.wait_for(lambda: _equals(exp, "sparki_up", 1, adapter="s3", target="flaky"))
    server.stop()
    await exp.wait_for(
        lambda: _equals(exp, "sparki_last_poll_error_reason", 1, target="flaky", reason="connect")
    )
    state = exp.runner("s3", "flaky").state
    assert state.last_duration is not None and state.last_duration <= state.timeout + 0.5
    # While down, the failed canary attempts keep counting, so the failure-ratio alert
    # can fire: the failed poll's snapshot is exported.
    first = await exp.value(
        "sparki_s3_probe_errors_total", target="flaky", operation="put", reason="connect"
    )
    await exp.polls("s3", "flaky", 2)
    later = await exp.value(
        "sparki_s3_probe_errors_total", target="flaky", operation="put", reason="connect"
    )
    assert first is not None and later is not None and later >= first + 2
    assert await exp.value("sparki_up", adapter="s3", target="flaky") == 0
    # the other target keeps updating and /metrics stays fast
    await _keeps_updating(exp, "steady")
    with timed() as t:
        await exp.scrape()
    assert t[0] < 2.0
    server.start()
    await exp.wait_for(lambda: _equals(exp, "sparki_up", 1, adapter="s3", target="flaky"))


async def test_hung_endpoint_costs_one_deadline(start_exporter, s3_server, hung_server):
    exp = await start_exporter(
        conf(
            s3_server.target(
                "hung",
                endpoint_url=f"http://127.0.0.1:{hung_server.port}",
                canary={"prefix": prefix()},
            ),
            s3_server.target("steady", canary={"prefix": prefix()}),
            interval="2s",
            timeout="1.5s",
        )
    )
    await exp.polls("s3", "hung", 2, timeout=30)
    state = exp.runner("s3", "hung").state
    assert await exp.value("sparki_up", adapter="s3", target="hung") == 0
    assert state.last_reason is not None and state.last_reason.value == "timeout"
    assert state.last_duration is not None and state.last_duration <= state.timeout + 1.0
    assert state.polls == 0
    await _keeps_updating(exp, "steady")
    with timed() as t:
        status, _, _ = await exp.get("/metrics")
    assert status == 200 and t[0] < 2.0
    # pending keys of timed-out PUTs are bounded, never an ever-growing pile
    assert len(exp.runner("s3", "hung").target.collectors["canary"].pending) <= 100


async def test_targets_share_one_bounded_thread_pool(start_exporter, s3_server, hung_server):
    """20 targets used to run 41 threads; now at most the shared pool's 16, and two hung
    endpoints (each holding its max_workers threads until its read timeout) do not stop
    the healthy targets."""
    import threading

    healthy = [s3_server.target(f"s3-{i}", canary={"prefix": prefix()}) for i in range(20)]
    hung = [
        s3_server.target(
            f"hung-{i}",
            endpoint_url=f"http://127.0.0.1:{hung_server.port}",
            canary={"prefix": prefix()},
        )
        for i in range(2)
    ]
    exp = await start_exporter(conf(*healthy, *hung, interval="3s", timeout="2s"))
    peak = 0

    async def all_polled_twice() -> bool:
        nonlocal peak
        threads = [t for t in threading.enumerate() if t.name.startswith("sparki-s3")]
        peak = max(peak, len(threads))
        return all(exp.runner("s3", t["name"]).state.polls >= 2 for t in healthy)

    # Two successful polls of every healthy target (polls counts successes only; on a
    # loaded machine a single poll may still time out now and then, as moto shares this
    # process's CPU).
    await exp.wait_for(all_polled_twice, timeout=90, interval=0.05)
    assert 0 < peak <= s3_adapter.SHARED_THREADS.size, peak
    for t in hung:
        assert exp.runner("s3", t["name"]).state.last_reason.value == "timeout"


# --- CloudWatch ----------------------------------------------------------------------------


def _put(cw: Any, bucket: str, metric: str, value: float, ts: datetime, filter_id: str) -> None:
    cw.put_metric_data(
        Namespace="AWS/S3",
        MetricData=[
            {
                "MetricName": metric,
                # the one fixed order the exporter queries in (moto matches it in order)
                "Dimensions": [
                    {"Name": "BucketName", "Value": bucket},
                    {"Name": "FilterId", "Value": filter_id},
                ],
                "Timestamp": ts,
                "Value": value,
            }
        ],
    )


def _cw_target(server: Any, name: str, buckets: list[Any], **cw: Any) -> dict[str, Any]:
    settings = {
        "enabled": True,
        "endpoint_url": server.endpoint_url,
        "buckets": buckets,
        "period": "1s",
        "delay": "3s",
        "interval": "1s",
        "lookback": "2m",
        **cw,
    }
    return server.target(name, canary={"enabled": False}, cloudwatch=settings)


async def _requests(exp: Any, target: str, bucket: str) -> dict[str, float]:
    fams = await exp.families()
    out: dict[str, float] = {}
    for fam, label in (
        ("sparki_s3_requests", "operation"),
        ("sparki_s3_request_errors", "class"),
        ("sparki_s3_transferred_bytes", "direction"),
    ):
        if fam not in fams:
            continue
        for s in fams[fam].samples:
            if s.labels["target"] == target and s.labels["bucket"] == bucket:
                out[s.labels[label]] = s.value
    return out


async def test_cloudwatch_datapoints_become_exact_counters(start_exporter, s3_server):
    cw = s3_server.client("cloudwatch")
    bucket = unique_bucket("cw")
    now = datetime.now(UTC).replace(microsecond=0)
    seeded = {
        "GetRequests": [5, 7, 11],
        "PutRequests": [2, 3],
        "DeleteRequests": [1],
        "HeadRequests": [4],
        "ListRequests": [6],
        "4xxErrors": [2, 1],
        "5xxErrors": [1],
        "BytesDownloaded": [1000, 2500],
        "BytesUploaded": [300],
    }
    for metric_name, values in seeded.items():
        for i, value in enumerate(values):
            _put(
                cw, bucket, metric_name, value, now - timedelta(seconds=40 - 3 * i), "EntireBucket"
            )
    # AllRequests covers everything, including 9 requests of no listed kind ("other")
    _put(
        cw,
        bucket,
        "AllRequests",
        23 + 5 + 1 + 4 + 6 + 9,
        now - timedelta(seconds=30),
        "EntireBucket",
    )
    # latency: two datapoints in one period -> Average 30 ms, Maximum 40 ms
    for value in (20.0, 40.0):
        _put(cw, bucket, "FirstByteLatency", value, now - timedelta(seconds=20), "EntireBucket")
    _put(cw, bucket, "TotalRequestLatency", 55.0, now - timedelta(seconds=20), "EntireBucket")
    # another FilterId of the same bucket must not be counted
    _put(cw, bucket, "GetRequests", 1000, now - timedelta(seconds=30), "OtherFilter")

    exp = await start_exporter(conf(_cw_target(s3_server, "cw", [bucket])))
    expected = {
        "get": 23.0,
        "put": 5.0,
        "delete": 1.0,
        "head": 4.0,
        "list": 6.0,
        "post": 0.0,
        "select": 0.0,
        "other": 9.0,
        "4xx": 3.0,
        "5xx": 1.0,
        "download": 3500.0,
        "upload": 300.0,
    }

    async def settled() -> bool:
        return await _requests(exp, "cw", bucket) == expected

    await exp.wait_for(settled, timeout=20)
    # several more polls, several more windows: nothing is counted twice
    await exp.polls("s3", "cw", 3)
    assert await _requests(exp, "cw", bucket) == expected

    # A datapoint arriving late but still inside the delay is counted, exactly once.
    late = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    _put(cw, bucket, "GetRequests", 17, late, "EntireBucket")
    _put(cw, bucket, "AllRequests", 17, late, "EntireBucket")
    expected["get"] += 17
    await exp.wait_for(settled, timeout=20)
    await exp.polls("s3", "cw", 3)
    assert await _requests(exp, "cw", bucket) == expected

    labels = {"target": "cw", "bucket": bucket}
    assert await exp.value(
        "sparki_s3_request_latency_seconds", kind="first_byte", statistic="average", **labels
    ) == pytest.approx(0.030)
    assert await exp.value(
        "sparki_s3_request_latency_seconds", kind="first_byte", statistic="maximum", **labels
    ) == pytest.approx(0.040)
    assert await exp.value(
        "sparki_s3_request_latency_seconds", kind="total", statistic="average", **labels
    ) == pytest.approx(0.055)
    assert await exp.value("sparki_s3_request_metrics_available", **labels) == 1
    assert (
        await exp.value("sparki_capability", adapter="s3", target="cw", capability="cloudwatch")
        == 1
    )
    # cost transparency: calls and metrics requested are counted
    calls = await exp.value("sparki_s3_cloudwatch_requests_total", target="cw", api="GetMetricData")
    requested = await exp.value("sparki_s3_cloudwatch_metrics_requested_total", target="cw")
    assert calls is not None and calls >= 2
    assert requested is not None and requested >= 16 * (calls - 1)
    assert (
        await exp.value("sparki_s3_cloudwatch_requests_total", target="cw", api="ListMetrics") >= 1
    )


async def test_bucket_without_request_metrics_is_flagged_once(
    start_exporter, s3_server, captured_logs
):
    cw = s3_server.client("cloudwatch")
    with_data, without = unique_bucket("cwdata"), unique_bucket("cwnone")
    now = datetime.now(UTC).replace(microsecond=0)
    _put(cw, with_data, "AllRequests", 3, now - timedelta(seconds=30), "EntireBucket")
    _put(cw, with_data, "GetRequests", 3, now - timedelta(seconds=30), "EntireBucket")
    exp = await start_exporter(conf(_cw_target(s3_server, "flag", [with_data, without])))
    await until(exp, "sparki_s3_request_metrics_available", 1, bucket=with_data)
    await until(exp, "sparki_s3_request_metrics_available", 0, bucket=without)
    await until(exp, "sparki_capability", 0, target="flag", capability="request_metrics")
    await until(exp, "sparki_up", 1, adapter="s3", target="flag")
    await exp.polls("s3", "flag", 3)  # more polls must not repeat the log line
    lines = [
        line
        for line in captured_logs().splitlines()
        if "no request metrics" in line and without in line
    ]
    assert len(lines) == 1, lines
    assert "put-bucket-metrics-configuration" in lines[0]
    assert not [
        line
        for line in captured_logs().splitlines()
        if "no request metrics" in line and with_data in line
    ]


class FakeCloudWatch:
    """Records GetMetricData calls and answers in pages of 200 results."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        queries = kwargs["MetricDataQueries"]
        page = int(kwargs.get("NextToken") or 0)
        chunk = queries[page * 200 : page * 200 + 200]
        start: datetime = kwargs["StartTime"]
        results = [
            {
                "Id": q["Id"],
                "Timestamps": [start, start + timedelta(seconds=60)],
                "Values": [1.0, 2.0],
                "StatusCode": "Complete",
            }
            for q in chunk
        ]
        response: dict[str, Any] = {"MetricDataResults": results}
        if page * 200 + 200 < len(queries):
            response["NextToken"] = str(page + 1)
        return response


def test_get_metric_data_batches_500_queries_and_follows_pages():
    cfg = s3_adapter.S3Config(
        name="batch", bucket="some-bucket", cloudwatch={"enabled": True, "period": 60}
    )
    target = s3_adapter.S3Target(cfg, GlobalConfig())
    s3_adapter.SHARED_THREADS.detach()
    fake = FakeCloudWatch()
    target.ctx.cloudwatch = fake
    collector = target.collectors["cloudwatch"]
    queries = [{"Id": f"q{i}", "MetricStat": {}} for i in range(1003)]
    data = collector._get_metric_data(queries, 600.0, 1200.0)
    sizes = sorted({len(c["MetricDataQueries"]) for c in fake.calls})
    assert sizes == [3, 500]
    assert len(fake.calls) == 3 + 3 + 1  # two full batches of three pages, one small
    assert max(len(c["MetricDataQueries"]) for c in fake.calls) <= 500
    assert len(data) == 1003 and all(sum(points.values()) == 3.0 for points in data.values())
    assert collector.cw_calls["GetMetricData"] == len(fake.calls)
    assert collector.cw_metrics == sum(len(c["MetricDataQueries"]) for c in fake.calls)
    assert all(c["StartTime"] == datetime.fromtimestamp(600, UTC) for c in fake.calls)


def test_windows_align_to_the_period_and_never_overlap():
    cfg = s3_adapter.S3Config(
        name="win",
        bucket="some-bucket",
        cloudwatch={"enabled": True, "period": "60s", "delay": "2m", "interval": "5m"},
    )
    target = s3_adapter.S3Target(cfg, GlobalConfig())
    s3_adapter.SHARED_THREADS.detach()
    collector = target.collectors["cloudwatch"]
    now = 1_000_000.0 + 17.5
    target.ctx.clock = lambda: now
    assert collector._window() is None  # first poll: the starting line, no history
    start = collector.cw_end
    assert start is not None and start % 60 == 0 and start <= now - 120
    windows = []
    for _ in range(40):
        now += 37.0
        window = collector._window()
        if window is not None:
            windows.append(window)
            collector.cw_end = window[1]
    assert windows and windows[0][0] == start
    for (_, b), (c, _) in itertools.pairwise(windows):
        assert b == c  # contiguous: every period exactly once
    for a, b in windows:
        assert a % 60 == 0 and b % 60 == 0 and b - a >= 300 and b <= now - 120


# --- storage and cost ----------------------------------------------------------------------


async def test_cost_from_bucket_size_and_price_table(start_exporter, s3_server):
    cw = s3_server.client("cloudwatch")
    bucket = unique_bucket("cost")
    ts = datetime.now(UTC) - timedelta(hours=1)

    def put(metric: str, storage: str, value: float) -> None:
        cw.put_metric_data(
            Namespace="AWS/S3",
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [
                        {"Name": "BucketName", "Value": bucket},
                        {"Name": "StorageType", "Value": storage},
                    ],
                    "Timestamp": ts,
                    "Value": value,
                }
            ],
        )

    put("BucketSizeBytes", "StandardStorage", 5 * GIB)
    put("BucketSizeBytes", "StandardIAStorage", 2 * GIB)
    put("BucketSizeBytes", "GlacierStorage", 10 * GIB)  # no price configured
    put("NumberOfObjects", "AllStorageTypes", 42)
    target = _cw_target(s3_server, "cost", [bucket], request_metrics=False)
    target["prices"] = {"StandardStorage": 0.023, "StandardIAStorage": 0.0125}
    exp = await start_exporter(conf(target))
    await exp.wait_for(lambda: _equals(exp, "sparki_s3_bucket_objects", 42, bucket=bucket))
    labels = {"target": "cost", "bucket": bucket}
    assert (
        await exp.value("sparki_s3_bucket_size_bytes", storage_class="StandardStorage", **labels)
        == 5 * GIB
    )
    assert await exp.value(
        "sparki_s3_storage_cost_dollars_per_month", storage_class="StandardStorage", **labels
    ) == pytest.approx(5 * 0.023)
    assert await exp.value(
        "sparki_s3_storage_cost_dollars_per_month", storage_class="StandardIAStorage", **labels
    ) == pytest.approx(2 * 0.0125)
    assert (
        await exp.value("sparki_s3_bucket_size_bytes", storage_class="GlacierStorage", **labels)
        == 10 * GIB
    )
    assert (
        await exp.value(
            "sparki_s3_storage_cost_dollars_per_month", storage_class="GlacierStorage", **labels
        )
        is None
    )


async def test_inventory_lists_the_bucket_for_size_objects_and_cost(start_exporter, s3_server):
    """S3 services without CloudWatch or MinIO metrics still get size and cost."""
    bucket = unique_bucket("inv")
    s3_server.create_bucket(bucket)
    client = s3_server.client("s3")
    for i in range(1203):  # more than one LIST page
        client.put_object(Bucket=bucket, Key=f"artifacts/{i}", Body=b"x" * 1000)
    client.put_object(Bucket=bucket, Key="logs/old", Body=b"y" * 5000, StorageClass="STANDARD_IA")
    client.put_object(Bucket=bucket, Key=".sparki-canary/stale", Body=b"z" * 7)
    common = {"bucket": bucket, "canary": {"prefix": ".sparki-canary/"}}
    target = s3_server.target(
        "inv",
        **common,
        inventory={"enabled": True, "interval": "2s"},
        prices={"StandardStorage": 0.023, "StandardIAStorage": 0.0125},
    )
    capped = s3_server.target("capped", **common, inventory={"enabled": True, "max_objects": 100})
    # Listing 1203 objects from the in-process moto takes most of a second on a loaded
    # machine: a 0.9 s poll timeout made this test time out there, not the exporter.
    exp = await start_exporter(conf(target, capped, interval="3s", timeout="2.5s"))
    await until(exp, "sparki_s3_bucket_objects", 1204, target="inv", bucket=bucket)
    labels = {"target": "inv", "bucket": bucket}
    size = await exp.value("sparki_s3_bucket_size_bytes", storage_class="StandardStorage", **labels)
    assert size == 1203 * 1000  # the canary's own objects are not the bucket's content
    assert await exp.value(
        "sparki_s3_storage_cost_dollars_per_month", storage_class="StandardIAStorage", **labels
    ) == pytest.approx(5000 / GIB * 0.0125)

    # Later listings follow the bucket.
    client.delete_object(Bucket=bucket, Key="logs/old")
    await until(exp, "sparki_s3_bucket_objects", 1203, target="inv", bucket=bucket)
    assert await exp.value("sparki_capability", target="inv", capability="inventory") == 1

    # Past max_objects a partial sum would be wrong: no size at all, and a log line.
    await exp.polls("s3", "capped", 3)
    assert await exp.value("sparki_s3_bucket_objects", target="capped") is None
    assert await exp.value("sparki_s3_bucket_size_bytes", target="capped") is None


def test_default_price_is_s3_standard_list_price():
    cfg = s3_adapter.S3Config(name="p", bucket="some-bucket")
    assert cfg.prices == {"StandardStorage": 0.023}


# --- MinIO ---------------------------------------------------------------------------------


def test_minio_v2_sample_maps_onto_sparki_names():
    samples = _minio.parse_exposition((DATA / "minio_v2_bucket.prom").read_text())
    reading = _minio.bucket_reading(samples, {"sparki-platform"})
    tracker = _minio.CounterTracker()
    tracker.apply("node", reading.counters)
    totals = tracker.totals
    got = {(kind, key): v for (kind, bucket, key), v in totals.items()}
    assert got == {
        ("requests", "get"): 125,
        ("requests", "put"): 50,
        ("requests", "delete"): 10,
        ("requests", "head"): 32,
        ("requests", "list"): 11,
        ("requests", "post"): 4,
        ("requests", "select"): 1,
        ("requests", "other"): 9,
        ("errors", "4xx"): 6,
        ("errors", "5xx"): 1,
        ("bytes", "upload"): 5242880,
        ("bytes", "download"): 10485760,
    }
    assert {b for _, b, _ in totals} == {"sparki-platform"}
    assert reading.sizes == {"sparki-platform": 2 * GIB}
    assert reading.objects == {"sparki-platform": 12}
    everything = _minio.bucket_reading(samples, None)
    assert everything.buckets == {"sparki-platform", "other-bucket"}


def test_minio_v3_samples_map_onto_sparki_names():
    api = _minio.bucket_reading(
        _minio.parse_exposition((DATA / "minio_v3_bucket_api.prom").read_text()), None
    )
    tracker = _minio.CounterTracker()
    tracker.apply("node1", api.counters)
    assert tracker.totals == {
        ("requests", "sparki-platform", "get"): 10,
        ("requests", "sparki-platform", "put"): 8,
        ("requests", "sparki-platform", "list"): 3,
        ("errors", "sparki-platform", "4xx"): 2,
        ("errors", "sparki-platform", "5xx"): 1,
        ("bytes", "sparki-platform", "upload"): 2048,
        ("bytes", "sparki-platform", "download"): 4096,
    }
    usage = _minio.bucket_reading(
        _minio.parse_exposition((DATA / "minio_v3_usage_buckets.prom").read_text()), None
    )
    assert usage.sizes == {"sparki-platform": 10 * GIB}
    assert usage.objects == {"sparki-platform": 321}


def test_minio_counters_survive_node_restarts_and_node_switches():
    def reading(value: float, server: str) -> list[_minio.CounterReading]:
        labels = (("api", "getobject"), ("bucket", "b"), ("server", server))
        return [
            _minio.CounterReading(
                "requests", "b", "get", ("minio_bucket_requests_total", labels), value
            )
        ]

    tracker = _minio.CounterTracker()
    tracker.apply("u", reading(100, "n1"))
    tracker.apply("u", reading(130, "n1"))
    tracker.apply("u", reading(5, "n1"))  # n1 restarted: its new count is all new
    tracker.apply("u", reading(50, "n2"))  # a load balancer answered from another node
    tracker.apply("u", reading(8, "n1"))  # back on n1: only the increase counts
    tracker.apply("u", reading(8, "n1"))  # unchanged between two scrapes: nothing to add
    assert tracker.totals[("requests", "b", "get")] == 130 + 5 + 50 + 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html><body>login</body></html>\n", "line 1: expected a metric name"),
        ('m{a="1"\n', "line 1"),
        ('m{a="1",a="2"} 1\n', "appears twice"),
        ('m{a="x\\q"} 1\n', "invalid escape"),
        ("m 1\nm 2\n", "line 2: series m with these labels appears twice"),
        ("m one\n", "not a sample value"),
        ("m 1 2 3\n", "expected a value"),
        ("m 1 12.5\n", "not a timestamp"),
        ('m{a="1"}1\n', "expected a space"),
        ("# HELP m ok\nm\n", "line 2"),
    ],
)
def test_minio_parser_rejects_bad_input_clearly(body, problem):
    with pytest.raises(_minio.ExpositionError) as info:
        _minio.parse_exposition(body)
    assert problem in str(info.value)


def test_minio_parser_accepts_the_format_details():
    samples = _minio.parse_exposition(
        '# TYPE m counter\n\nm{b="q\\"uote\\\\n\\n",a="x",} +Inf 1700000000000\n'
        "n -1.5e-3\r\nnan_metric NaN\n"
    )
    assert samples[0].labels == (("a", "x"), ("b", 'q"uote\\n\n'))
    assert samples[0].value == math.inf
    assert samples[1].value == -0.0015
    assert math.isnan(samples[2].value)


def test_minio_negative_counter_is_an_error():
    samples = _minio.parse_exposition(
        'minio_bucket_requests_total{api="getobject",bucket="b"} -1\n'
    )
    with pytest.raises(_minio.ExpositionError):
        _minio.bucket_reading(samples, None)


class FakeMinio:
    """Serves a MinIO v2 bucket exposition behind a bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.body = (DATA / "minio_v2_bucket.prom").read_text()
        self.requests = 0
        self.v3_buckets: str | None = None
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def handler(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=403, text="Access Denied")
        return web.Response(text=self.body, content_type="text/plain")

    async def v3_api(self, request: web.Request) -> web.Response:
        self.v3_buckets = request.query.get("buckets")
        response = await self.handler(request)
        if response.status == 200:
            response.text = (DATA / "minio_v3_bucket_api.prom").read_text()
        return response

    async def v3_usage(self, request: web.Request) -> web.Response:
        response = await self.handler(request)
        if response.status == 200:
            response.text = (DATA / "minio_v3_usage_buckets.prom").read_text()
        return response

    async def start(self) -> FakeMinio:
        app = web.Application()
        app.router.add_get("/minio/v2/metrics/bucket", self.handler)
        app.router.add_get("/minio/metrics/v3/bucket/api", self.v3_api)
        app.router.add_get("/minio/metrics/v3/cluster/usage/buckets", self.v3_usage)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def fake_minio():
    server = await FakeMinio("eyJhbGciOiJIUzUxMiJ9.sparki-minio-token.sig").start()
    yield server
    await server.stop()


async def test_minio_metrics_endpoint_end_to_end(start_exporter, s3_server, fake_minio, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(fake_minio.token + "\n")
    target = s3_server.target(
        "minio",
        bucket="sparki-platform",
        endpoint_url=fake_minio.url,
        canary={"enabled": False},
        minio={"enabled": True, "bearer_token_file": str(token_file)},
    )
    exp = await start_exporter(conf(target))
    labels = {"target": "minio", "bucket": "sparki-platform"}
    await exp.wait_for(
        lambda: _equals(exp, "sparki_s3_requests_total", 125, operation="get", **labels)
    )
    assert await _requests(exp, "minio", "sparki-platform") == {
        "get": 125,
        "put": 50,
        "delete": 10,
        "head": 32,
        "list": 11,
        "post": 4,
        "select": 1,
        "other": 9,
        "4xx": 6,
        "5xx": 1,
        "upload": 5242880,
        "download": 10485760,
    }
    assert await exp.value("sparki_s3_bucket_objects", **labels) == 12
    assert await exp.value(
        "sparki_s3_storage_cost_dollars_per_month", storage_class="StandardStorage", **labels
    ) == pytest.approx(2 * 0.023)
    assert await exp.value("sparki_s3_requests_total", bucket="other-bucket") is None

    # MinIO restarted: its counters start over; ours keep going up.
    fake_minio.body = fake_minio.body.replace(
        'minio_bucket_requests_total{api="getobject",bucket="sparki-platform",'
        'server="127.0.0.1:9000"} 120',
        'minio_bucket_requests_total{api="getobject",bucket="sparki-platform",'
        'server="127.0.0.1:9000"} 3',
    )
    await exp.wait_for(
        lambda: _equals(exp, "sparki_s3_requests_total", 128, operation="get", **labels)
    )

    # A bad body: reported as protocol, the last good figures stay.
    fake_minio.body = "<html>not metrics</html>\n"
    await exp.wait_for(
        lambda: _equals(exp, "sparki_up", 0, adapter="s3", target="minio")
    )  # the only source failed
    assert exp.runner("s3", "minio").state.last_reason.value == "protocol"
    assert "line 1" in (exp.runner("s3", "minio").state.last_error or "")

    # A wrong token is auth.
    fake_minio.token = "another-token-value"
    await exp.wait_for(
        lambda: _equals(exp, "sparki_last_poll_error_reason", 1, target="minio", reason="auth")
    )


async def test_minio_v3_sums_nodes_and_reads_cluster_usage(start_exporter, s3_server):
    token = "v3-token-abcdef"
    nodes = [await FakeMinio(token).start(), await FakeMinio(token).start()]
    try:
        target = s3_server.target(
            "minio3",
            bucket="sparki-platform",
            endpoint_url=nodes[0].url,
            canary={"enabled": False},
            minio={
                "enabled": True,
                "version": "v3",
                "node_urls": [n.url for n in nodes],
                "bearer_token": token,
            },
        )
        exp = await start_exporter(conf(target))
        labels = {"target": "minio3", "bucket": "sparki-platform"}
        # each node served the same per-node sample: the totals are twice its values
        await until(exp, "sparki_s3_requests_total", 20, operation="get", **labels)
        assert await _requests(exp, "minio3", "sparki-platform") == {
            "get": 20,
            "put": 16,
            "delete": 0,
            "head": 0,
            "list": 6,
            "post": 0,
            "select": 0,
            "other": 0,
            "4xx": 4,
            "5xx": 2,
            "upload": 4096,
            "download": 8192,
        }
        assert await exp.value("sparki_s3_bucket_objects", **labels) == 321
        assert (
            await exp.value(
                "sparki_s3_bucket_size_bytes", storage_class="StandardStorage", **labels
            )
            == 10 * GIB
        )
        assert all(n.v3_buckets == "sparki-platform" for n in nodes)
    finally:
        for n in nodes:
            await n.stop()


async def test_minio_failure_does_not_fail_the_poll_while_the_canary_runs(
    start_exporter, s3_server, fake_minio
):
    target = s3_server.target(
        "mixed",
        canary={"prefix": prefix()},
        minio={
            "enabled": True,
            "node_urls": [fake_minio.url],
            "bearer_token": "wrong-token-0123",
            "buckets": ["*"],
        },
    )
    exp = await start_exporter(conf(target))
    await until(exp, "sparki_capability", 0, target="mixed", capability="minio_metrics")
    await exp.wait_for(
        lambda: _at_least(
            exp, "sparki_s3_source_errors_total", 1, target="mixed", source="minio", reason="auth"
        )
    )
    # the source failed, the canary works: the target is up
    await until(exp, "sparki_up", 1, adapter="s3", target="mixed")


# --- secrets -------------------------------------------------------------------------------


async def test_secrets_never_leak(
    start_exporter, s3_auth_server, fake_minio, captured_logs, tmp_path
):
    server = s3_auth_server
    secret_file = tmp_path / "secret"
    secret_file.write_text(server.secret_key + "\n")
    wrong_key, wrong_secret = "AKIALEAKCHECK0000001", "leak-check-secret/With+Chars"
    exp = await start_exporter(
        conf(
            {
                **server.target("fine", canary={"prefix": prefix()}),
                "secret_access_key": None,
                "secret_access_key_file": str(secret_file),
            },
            server.target("denied", access_key_id=wrong_key, secret_access_key=wrong_secret),
            server.target(
                "tokened",
                endpoint_url=fake_minio.url,
                canary={"enabled": False},
                minio={"enabled": True, "bearer_token": "x" + fake_minio.token},
            ),
        )
    )
    await until(exp, "sparki_up", 1, adapter="s3", target="fine")
    await until(exp, "sparki_last_poll_error_reason", 1, target="denied", reason="auth")
    await until(exp, "sparki_last_poll_error_reason", 1, target="tokened", reason="auth")
    for name in ("fine", "denied", "tokened"):
        await exp.polls("s3", name, 1)
    secrets = [server.access_key, server.secret_key, wrong_key, wrong_secret, fake_minio.token]
    _, _, landing = await exp.get("/")
    texts = {
        "metrics": await exp.scrape(),
        "landing": landing.decode(),
        "logs": captured_logs(),
        "errors": " ".join(r.state.last_error or "" for r in exp.exporter.runners),
    }
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, where
    assert exp.runner("s3", "denied").state.last_error


# --- config --------------------------------------------------------------------------------


def _validate(target: dict[str, Any]) -> Any:
    return config_mod.validate(conf({"name": "t", "bucket": "some-bucket", **target}), {})


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ({"access_key_id": "AKIAONLYKEY"}, "set both access_key_id and secret_access_key"),
        ({"bucket": "Bad_Bucket"}, "not a valid S3 bucket name"),
        ({"endpoint_url": "http://user:hunter2@minio:9000"}, "must not contain credentials"),
        ({"cloudwatch": {"period": "45s"}}, "multiple of 60"),
        ({"cloudwatch": {"latency_statistics": ["Median"]}}, "not a CloudWatch statistic"),
        (
            {"cloudwatch": {"enabled": True}, "minio": {"enabled": True}},
            "not both",
        ),
        ({"minio": {"enabled": True}, "cloudwatch": {"enabled": False}}, "need endpoint_url"),
        ({"canary": {"enabled": False}, "endpoint_url": "http://m:9000"}, "at least one"),
        ({"prices": {"StandardStorage": -1}}, "non-negative"),
        ({"cloudwatch": {"buckets": ["dup-bucket", "dup-bucket"]}}, "at most once"),
        ({"minio": {"node_urls": ["http://a:9000", "http://b:9000"]}}, "give one URL"),
    ],
)
def test_config_problems_are_reported_without_echoing_values(target, problem):
    with pytest.raises(ConfigError) as info:
        _validate(target)
    text = str(info.value)
    assert problem in text
    assert "hunter2" not in text


def test_config_defaults_and_discovery():
    assert "s3" in by_name()
    cfg = _validate({"endpoint_url": "http://minio:9000/"})
    ((section, target),) = cfg.targets()
    assert section == "s3" and target.endpoint_url == "http://minio:9000"
    assert not target.cloudwatch_enabled  # not AWS: no CloudWatch unless asked
    aws = _validate({})
    assert aws.targets()[0][1].cloudwatch_enabled
    assert aws.targets()[0][1].cloudwatch_buckets()[0].filter_id == "EntireBucket"


def test_from_env_minio_and_aws():
    env = {
        "MINIO_ENDPOINT": "minio.internal:9000",
        "MINIO_ACCESS_KEY": "minio-access",
        "MINIO_SECRET_KEY": "minio-secret",
        "S3_BUCKET": "sparki-platform",
    }
    (target,) = s3_adapter.from_env(env)
    assert target["endpoint_url"] == "https://minio.internal:9000"
    assert target["bucket"] == "sparki-platform"
    assert target["access_key_id"] == "minio-access"
    cfg = config_mod.from_environment(env)
    assert cfg.targets()[0][0] == "s3"
    assert "minio-secret" in cfg.secrets() and "minio-access" in cfg.secrets()
    (plain,) = s3_adapter.from_env(
        {**env, "MINIO_SECURE": "false", "SPARKI_MINIO_METRICS_TOKEN": "tok"}
    )
    assert plain["endpoint_url"].startswith("http://")
    assert plain["minio"]["enabled"] is True
    (aws,) = s3_adapter.from_env({"S3_BUCKET": "artifacts", "AWS_REGION": "eu-west-1"})
    assert "endpoint_url" not in aws and aws["region"] == "eu-west-1"
    assert s3_adapter.from_env({}) == []


def test_probe_reasons_come_from_the_fixed_set():
    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "PutObject",
        )

    cases = {
        "no_bucket": client_error("NoSuchBucket", 404),
        "auth": client_error("InvalidAccessKeyId", 403),
        "throttled": client_error("SlowDown", 503),
        "checksum": client_error("BadDigest", 400),
        "other": client_error("InternalError", 500),
        "timeout": TimeoutError(),
        "connect": ConnectionRefusedError(),
    }
    for reason, exc in cases.items():
        assert s3_adapter.probe_reason(exc) == reason
        assert reason in s3_adapter.PROBE_REASONS
    assert s3_adapter.classify(client_error("AccessDenied", 403)).reason.value == "permission"
    assert s3_adapter.classify(client_error("SignatureDoesNotMatch", 403)).reason.value == "auth"


def test_a_snapshot_never_changes_when_the_target_counts_on():
    """The core renders a snapshot once and serves it until the next poll: what the
    target counts afterwards must not leak into it (shared lists or counters would)."""
    target = s3_adapter.S3Target(
        s3_adapter.S3Config(name="f", bucket="some-bucket", endpoint_url="http://x:1"),
        GlobalConfig(),
    )
    s3_adapter.SHARED_THREADS.detach()

    def text(snap: Any) -> bytes:
        return b"".join(r.text_header + r.body for r in render_families(s3_adapter.families(snap)))

    canary = target.collectors["canary"]
    snap = target._snapshot()
    before = text(snap)
    canary.histograms["put"].observe(0.01)
    canary.probes["put"] += 1
    canary.probe_errors[("get", "timeout")] += 1
    target.ctx.usage.sizes[("some-bucket", "StandardStorage")] = 5.0
    assert text(snap) == before
    after = text(target._snapshot())
    assert after != before
    labels = b'{target="f",bucket="some-bucket",operation="put"}'
    assert b"sparki_s3_probe_duration_seconds_count" + labels + b" 1\n" in after
