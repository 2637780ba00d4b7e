"""The ``cloudwatch`` collector: S3 request and storage metrics from CloudWatch (AWS).

Request metrics of the configured buckets and FilterIds come in batched GetMetricData
calls, over windows aligned to the period and held back by a delay; each settled
period is fetched exactly once and its Sum added to monotonic counters (in the
context's :class:`~exporter.adapters.s3.usage.Usage`). Daily storage metrics
(BucketSizeBytes per StorageType, NumberOfObjects) come on a slower cadence with a
48 h window. API calls and metrics requested are counted, since CloudWatch bills them.

On by default for AWS (a target without ``endpoint_url``), off for other S3 services
unless ``cloudwatch: {enabled: true}``. A failure degrades this collector alone
(``sparki_capability{capability="cloudwatch"}`` 0, sparki_s3_source_errors_total).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...adapter import Reason
from ...logs import kv
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .config import CloudWatchBucket
from .context import S3Collector, S3Context
from .errors import SourceError

log = logging.getLogger("sparki.s3")

# CloudWatch request metrics (namespace AWS/S3, dimensions BucketName and FilterId).
CW_NAMESPACE = "AWS/S3"
CW_REQUESTS = {
    "GetRequests": "get",
    "PutRequests": "put",
    "DeleteRequests": "delete",
    "HeadRequests": "head",
    "PostRequests": "post",
    "ListRequests": "list",
    "SelectRequests": "select",
}
CW_ALL_REQUESTS = "AllRequests"
CW_ERRORS = {"4xxErrors": "4xx", "5xxErrors": "5xx"}
CW_BYTES = {"BytesDownloaded": "download", "BytesUploaded": "upload"}
CW_LATENCY = {"FirstByteLatency": "first_byte", "TotalRequestLatency": "total"}
CW_MAX_QUERIES = 500  # per GetMetricData call
CW_MAX_PAGES = 100  # per batch, against a runaway NextToken loop
DAY = 86400.0
LATENCY_KINDS = ("first_byte", "total")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True, slots=True)
class CloudWatchPart:
    latency: tuple[tuple[str, str, str, float], ...]  # bucket, kind, statistic, seconds
    request_metrics_available: tuple[tuple[str, bool], ...]
    calls: tuple[tuple[str, int], ...]
    metrics_requested: int


class Collector(S3Collector):
    """Windows already counted, the newest latency, and what CloudWatch was asked."""

    SOURCE = "cloudwatch"

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.cw_end: float | None = None
        self.storage_next = 0.0  # monotonic
        self.latency: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (value, ts)
        self.listed: set[str] | None = None  # buckets with request metrics in ListMetrics
        self.data_seen: set[str] = set()
        self.cw_calls: Counter[str] = Counter()
        self.cw_metrics = 0
        self._cw_lock = threading.Lock()
        for b in ctx.config.cloudwatch_buckets():
            ctx.usage.init_counters(b.name)

    async def collect(self) -> None:
        try:
            await self._collect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.ctx.source_result("cloudwatch", exc)
            raise
        self.ctx.source_result("cloudwatch", None)

    async def _collect(self) -> None:
        cw = self.ctx.config.cloudwatch
        now_mono = time.monotonic()
        if (cw.storage_metrics or cw.request_metrics) and now_mono >= self.storage_next:
            listing = await self.ctx.call(self._list_metrics)
            self._apply_listing(*listing)
            # Storage metrics are daily; failures retry on the next poll.
            self.storage_next = now_mono + cw.storage_interval
        if cw.request_metrics:
            await self._request_metrics()

    def _available(self) -> list[tuple[str, bool]]:
        if not self.ctx.config.cloudwatch.request_metrics or self.listed is None:
            return []
        listed = self.listed
        return [
            (b.name, b.name in listed or b.name in self.data_seen)
            for b in self.ctx.config.cloudwatch_buckets()
        ]

    def capabilities(self) -> list[tuple[str, bool]]:
        out = [("cloudwatch", self.ctx.source_ok.get("cloudwatch", False))]
        available = self._available()
        if self.ctx.config.cloudwatch.request_metrics and self.listed is not None:
            out.append(("request_metrics", all(v for _, v in available)))
        return out

    def part(self) -> CloudWatchPart:
        return CloudWatchPart(
            latency=tuple(self._current_latency()),
            request_metrics_available=tuple(self._available()),
            calls=tuple((api, self.cw_calls[api]) for api in ("GetMetricData", "ListMetrics")),
            metrics_requested=self.cw_metrics,
        )

    def _count_cw(self, api: str, metrics: int = 0) -> None:
        with self._cw_lock:
            self.cw_calls[api] += 1
            self.cw_metrics += metrics

    def _list_bucket_metrics(self, bucket: str) -> list[dict[str, Any]]:
        """Every AWS/S3 metric of one bucket CloudWatch has had data for (two weeks)."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        token: str | None = None
        for _ in range(CW_MAX_PAGES):
            kwargs: dict[str, Any] = {
                "Namespace": CW_NAMESPACE,
                "Dimensions": [{"Name": "BucketName", "Value": bucket}],
            }
            if token:
                kwargs["NextToken"] = token
            response = self.ctx.cloudwatch.list_metrics(**kwargs)
            self._count_cw("ListMetrics")
            for metric in response.get("Metrics") or []:
                dims = tuple(
                    (str(d.get("Name")), str(d.get("Value")))
                    for d in metric.get("Dimensions") or []
                )
                key = (str(metric.get("MetricName")), dims)
                if key not in seen:  # some implementations list a metric more than once
                    seen.add(key)
                    out.append(metric)
            token = response.get("NextToken")
            if not token:
                break
        return out

    def _list_metrics(
        self,
    ) -> tuple[set[str] | None, dict[tuple[str, str], float], dict[str, float]]:
        """In a worker thread: which buckets have request metrics, and their storage.

        One ListMetrics call per configured bucket (more only if it pages), so the cost
        is bounded by the config, not by the number of buckets in the account.
        """
        cw = self.ctx.config.cloudwatch
        listed: set[str] | None = set() if cw.request_metrics else None
        queries: list[dict[str, Any]] = []
        keys: dict[str, tuple[str, str]] = {}
        for b in self.ctx.config.cloudwatch_buckets():
            for metric in self._list_bucket_metrics(b.name):
                metric_name = metric.get("MetricName")
                dimensions = metric.get("Dimensions") or []
                dims = {d.get("Name"): d.get("Value") for d in dimensions}
                if dims.get("BucketName") != b.name:
                    continue
                if metric_name == CW_ALL_REQUESTS:
                    if listed is not None and dims.get("FilterId") == b.filter_id:
                        listed.add(b.name)
                    continue
                storage = dims.get("StorageType")
                if (
                    not cw.storage_metrics
                    or metric_name not in ("BucketSizeBytes", "NumberOfObjects")
                    or not storage
                    or len(dims) != 2
                ):
                    continue
                qid = f"s{len(queries)}"
                keys[qid] = (b.name, str(storage) if metric_name == "BucketSizeBytes" else "")
                # Dimensions exactly as ListMetrics returned them: some implementations
                # (moto) match them in order.
                queries.append(
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": CW_NAMESPACE,
                                "MetricName": metric_name,
                                "Dimensions": dimensions,
                            },
                            "Period": int(DAY),
                            "Stat": "Average",
                        },
                        "ReturnData": True,
                    }
                )
        sizes: dict[tuple[str, str], float] = {}
        objects: dict[str, float] = {}
        if queries:
            now = self.ctx.clock()
            start = math.floor(now / DAY) * DAY - 2 * DAY  # a 48 h window of daily points
            end = math.floor(now)
            data = self._get_metric_data(queries, start, end)
            for qid, points in data.items():
                if not points:
                    continue
                latest = points[max(points)]
                bucket, storage = keys[qid]
                if storage:
                    sizes[(bucket, storage)] = latest
                else:
                    objects[bucket] = latest
        return listed, sizes, objects

    def _apply_listing(
        self,
        listed: set[str] | None,
        sizes: dict[tuple[str, str], float],
        objects: dict[str, float],
    ) -> None:
        if self.ctx.config.cloudwatch.storage_metrics:
            self.ctx.usage.sizes = sizes
            self.ctx.usage.objects = objects
        if listed is not None:
            self.listed = listed
            self.data_seen = set()
            self._check_availability()

    def _check_availability(self) -> None:
        if self.listed is None:
            return
        for b in self.ctx.config.cloudwatch_buckets():
            available = b.name in self.listed or b.name in self.data_seen
            self.ctx.report(
                f"request_metrics:{b.name}",
                None if available else "no_data",
                "CloudWatch request metrics available"
                if available
                else "CloudWatch has no request metrics for this bucket: add a metrics "
                "configuration (the counters stay at 0 until then)",
                bucket=b.name,
                filter_id=b.filter_id,
                **(
                    {}
                    if available
                    else {
                        "fix": f"aws s3api put-bucket-metrics-configuration --bucket {b.name} "
                        f"--id {b.filter_id} --metrics-configuration Id={b.filter_id}"
                    }
                ),
            )

    def _window(self) -> tuple[float, float] | None:
        """The next settled window [start, end), aligned to the period; None if not due.

        ``end`` is the newest period boundary at least ``delay`` in the past; a window is
        queried once it spans ``interval``, so the query rate (and the bill) does not
        depend on the poll interval.
        """
        cw = self.ctx.config.cloudwatch
        period = cw.period
        end = math.floor((self.ctx.clock() - cw.delay) / period) * period
        if self.cw_end is None:
            if cw.lookback is None:
                self.cw_end = end  # count from here on; history is not ours to add
                return None
            start = end - math.ceil(cw.lookback / period) * period
        else:
            start = self.cw_end
        if end - start < max(cw.interval, period):
            return None
        longest = max(period, math.floor(cw.max_catchup / period) * period)
        if end - start > longest:
            log.warning(
                "CloudWatch request metrics fell too far behind; skipping periods",
                extra=kv(
                    target=self.ctx.config.name, periods=int((end - longest - start) / period)
                ),
            )
            start = end - longest
        return start, end

    def _request_queries(self) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str, str]]]:
        cw = self.ctx.config.cloudwatch
        queries: list[dict[str, Any]] = []
        meaning: dict[str, tuple[str, str, str]] = {}  # id -> (bucket, metric, statistic)

        def add(bucket: CloudWatchBucket, metric: str, stat: str) -> None:
            qid = f"q{len(queries)}"
            meaning[qid] = (bucket.name, metric, stat)
            queries.append(
                {
                    "Id": qid,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": CW_NAMESPACE,
                            "MetricName": metric,
                            # One fixed order: BucketName, then FilterId.
                            "Dimensions": [
                                {"Name": "BucketName", "Value": bucket.name},
                                {"Name": "FilterId", "Value": bucket.filter_id},
                            ],
                        },
                        "Period": int(cw.period),
                        "Stat": stat,
                    },
                    "ReturnData": True,
                }
            )

        for b in self.ctx.config.cloudwatch_buckets():
            for metric in (CW_ALL_REQUESTS, *CW_REQUESTS, *CW_ERRORS, *CW_BYTES):
                add(b, metric, "Sum")
            for metric in CW_LATENCY:
                for stat in cw.latency_statistics:
                    add(b, metric, stat)
        return queries, meaning

    def _get_metric_data(
        self, queries: list[dict[str, Any]], start: float, end: float
    ) -> dict[str, dict[float, float]]:
        """All datapoints of ``queries`` in [start, end): batches of 500, every page."""
        out: dict[str, dict[float, float]] = {q["Id"]: {} for q in queries}
        for i in range(0, len(queries), CW_MAX_QUERIES):
            batch = queries[i : i + CW_MAX_QUERIES]
            token: str | None = None
            for _ in range(CW_MAX_PAGES):
                kwargs: dict[str, Any] = {
                    "MetricDataQueries": batch,
                    "StartTime": _utc(start),
                    "EndTime": _utc(end),
                    "ScanBy": "TimestampAscending",
                }
                if token:
                    kwargs["NextToken"] = token
                response = self.ctx.cloudwatch.get_metric_data(**kwargs)
                self._count_cw("GetMetricData", len(batch))
                for result in response.get("MetricDataResults") or []:
                    status = result.get("StatusCode", "Complete")
                    if status not in ("Complete", "PartialData"):
                        raise SourceError(
                            Reason.PROTOCOL, f"GetMetricData returned status {status}"
                        )
                    series = out.get(str(result.get("Id")))
                    if series is None:
                        continue
                    for ts, value in zip(
                        result.get("Timestamps") or [], result.get("Values") or [], strict=False
                    ):
                        epoch = ts.timestamp() if isinstance(ts, datetime) else float(ts)
                        if start <= epoch < end and math.isfinite(float(value)):
                            series[epoch] = float(value)
                token = response.get("NextToken")
                if not token:
                    break
            else:
                raise SourceError(Reason.PROTOCOL, "GetMetricData kept returning NextToken")
        return out

    async def _request_metrics(self) -> None:
        window = self._window()
        if window is None:
            return
        start, end = window
        queries, meaning = self._request_queries()
        data = await self.ctx.call(lambda: self._get_metric_data(queries, start, end))
        # Only a complete window is applied, and only once: the next starts at its end.
        self._apply_requests(data, meaning)
        self.cw_end = end

    def _apply_requests(
        self, data: dict[str, dict[float, float]], meaning: dict[str, tuple[str, str, str]]
    ) -> None:
        sums: dict[tuple[str, str], float] = {}
        newest_latency: dict[tuple[str, str, str], tuple[float, float]] = {}
        seen: set[str] = set()
        for qid, points in data.items():
            if not points:
                continue
            bucket, metric, stat = meaning[qid]
            seen.add(bucket)
            if metric in CW_LATENCY:
                ts = max(points)
                kind = CW_LATENCY[metric]
                newest_latency[(bucket, kind, stat.lower())] = (points[ts] / 1000.0, ts)
            else:
                sums[(bucket, metric)] = sums.get((bucket, metric), 0.0) + sum(points.values())
        for b in self.ctx.config.cloudwatch_buckets():
            name = b.name
            known = 0.0
            for metric, op in CW_REQUESTS.items():
                value = sums.get((name, metric), 0.0)
                known += value
                self.ctx.usage.requests[(name, op)] = (
                    self.ctx.usage.requests.get((name, op), 0.0) + value
                )
            other = max(0.0, sums.get((name, CW_ALL_REQUESTS), 0.0) - known)
            self.ctx.usage.requests[(name, "other")] = (
                self.ctx.usage.requests.get((name, "other"), 0.0) + other
            )
            for metric, cls in CW_ERRORS.items():
                key = (name, cls)
                self.ctx.usage.request_errors[key] = self.ctx.usage.request_errors.get(
                    key, 0.0
                ) + sums.get((name, metric), 0.0)
            for metric, direction in CW_BYTES.items():
                key = (name, direction)
                self.ctx.usage.transferred[key] = self.ctx.usage.transferred.get(
                    key, 0.0
                ) + sums.get((name, metric), 0.0)
        self.latency.update(newest_latency)
        if seen - self.data_seen:
            self.data_seen |= seen
            self._check_availability()

    def _current_latency(self) -> list[tuple[str, str, str, float]]:
        """Latency of the newest settled period with traffic, for a limited time only."""
        cw = self.ctx.config.cloudwatch
        hold = cw.delay + max(900.0, 3 * max(cw.interval, cw.period))
        now = self.ctx.clock()
        return [
            (bucket, kind, stat, value)
            for (bucket, kind, stat), (value, ts) in sorted(self.latency.items())
            if now - ts <= hold
        ]


def families(t: str, bucket: str, part: CloudWatchPart) -> list[Metric]:
    latency = GaugeMetricFamily(
        "sparki_s3_request_latency_seconds",
        "Request latency of the newest settled CloudWatch period with traffic, by kind "
        "(first_byte, total) and statistic",
        labels=["target", "bucket", "kind", "statistic"],
    )
    for name, kind, stat, value in part.latency:
        latency.add_metric([t, name, kind, stat], value)
    out: list[Metric] = [latency]
    if part.request_metrics_available:
        avail = GaugeMetricFamily(
            "sparki_s3_request_metrics_available",
            "1 when CloudWatch has request metrics for the bucket's FilterId, 0 when it has "
            "none (the log says how to add a metrics configuration)",
            labels=["target", "bucket"],
        )
        for name, ok in part.request_metrics_available:
            avail.add_metric([t, name], 1 if ok else 0)
        out.append(avail)
    calls = CounterMetricFamily(
        "sparki_s3_cloudwatch_requests",
        "CloudWatch API calls the exporter made, pages included",
        labels=["target", "api"],
    )
    for api, count in part.calls:
        calls.add_metric([t, api], count)
    requested = CounterMetricFamily(
        "sparki_s3_cloudwatch_metrics_requested",
        "Metrics requested in GetMetricData calls, the unit CloudWatch bills",
        labels=["target"],
    )
    requested.add_metric([t], part.metrics_requested)
    out += [calls, requested]
    return out
