"""S3 and S3-compatible storage (MinIO): a canary, request metrics, bucket size and cost.

Three independent parts, each switchable per target:

* **Canary** (every poll): PUT a small random object under a dedicated prefix, GET it
  back and compare the bytes, HEAD it, DELETE it, each timed into
  ``sparki_s3_probe_duration_seconds``. Every key is remembered from before its PUT is
  sent until a DELETE succeeded, so an object is never left behind: a DELETE that fails
  (or could not be tried because the endpoint stopped answering) is retried on the
  next polls. A lifecycle rule on the prefix is the safety net (docs/s3.md).
* **CloudWatch** (AWS): request metrics of the configured buckets and FilterIds in
  batched GetMetricData calls, over windows aligned to the period and held back by a
  delay; each settled period is fetched exactly once and its Sum added to monotonic
  counters. Daily storage metrics (BucketSizeBytes per StorageType, NumberOfObjects)
  on a slower cadence with a 48 h window. API calls and metrics requested are counted.
* **MinIO metrics**: MinIO's own Prometheus endpoint (bucket level, bearer token),
  mapped onto the same ``sparki_s3_*`` names.

boto3 is synchronous: its clients are made once per target and called on one thread
pool shared by every S3 target (at most ``max_workers`` calls of one target at a time,
so a hung endpoint cannot take every thread), with connect/read timeouts below the poll
timeout and no
retries for the canary, so the event loop never blocks and a hung endpoint costs one
deadline. Results of a call that finishes after its poll was abandoned are still
recorded (a PUT that landed late still gets deleted).

When does a poll fail (``sparki_up`` 0)? When the canary's PUT fails because the
endpoint cannot be reached (``connect``), does not answer in time (``timeout``),
rejects the credentials (``auth``/``permission``) or the bucket does not exist
(``other``, with a message saying so): the storage is unusable. Any other canary
failure (a 5xx, throttling, a checksum mismatch, a failed GET/HEAD/DELETE) is counted
in ``sparki_s3_probe_errors_total`` and the poll succeeds, so the failure *rate* is
visible. CloudWatch and MinIO-metrics failures never fail a poll while the canary
runs; they set ``sparki_capability`` to 0, count in ``sparki_s3_source_errors_total``
and log one line per change. With the canary disabled, a poll fails only when every
enabled source failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import logging
import math
import os
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from ...adapter import PollError, Reason
from ...config import Duration, GlobalConfig, Strict, TargetConfig
from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .catalog import COLLECTORS
from .minio import CounterTracker, ExpositionError, bucket_reading, parse_exposition

# boto3 and botocore ship no type information; they are used as Any on purpose.
_boto3: Any = importlib.import_module("boto3")
_bexc: Any = importlib.import_module("botocore.exceptions")
_bconfig: Any = importlib.import_module("botocore.config")
_bhandlers: Any = importlib.import_module("botocore.handlers")
_bsession: Any = importlib.import_module("botocore.session")
_bloaders: Any = importlib.import_module("botocore.loaders")

# One model loader for every target. Each botocore session otherwise parses its own copy
# of the S3 and CloudWatch service models and endpoint rules: measured here, 13.4 MB per
# target with its own loader, 1.4 MB with this one. The loader only caches read-only
# JSON; credentials stay per session.
_SHARED_LOADER: Any = None
_SHARED_LOADER_LOCK = threading.Lock()


def _botocore_session() -> Any:
    global _SHARED_LOADER
    with _SHARED_LOADER_LOCK:
        if _SHARED_LOADER is None:
            _SHARED_LOADER = _bloaders.create_loader()
        loader = _SHARED_LOADER
    session = _bsession.get_session()
    session.register_component("data_loader", loader)
    return session


class _SharedThreads:
    """One bounded thread pool for every S3 target's boto3 calls.

    A pool per target cost two to three threads each (20 targets ran 41 threads). The
    shared pool starts threads only as calls need them, up to ``size``; each target
    still runs at most its ``max_workers`` calls at once (see ``S3Target._submit``), so
    a hung endpoint holds at most that many threads, each until its read timeout. The
    pool is shut down when the last target closes and made again by the next one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._users = 0

    def attach(self) -> None:
        with self._lock:
            self._users += 1

    def detach(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            pool = self._pool if self._users == 0 else None
            if pool is not None:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.size, thread_name_prefix="sparki-s3"
                )
            return self._pool


# 16 threads: S3 calls take milliseconds, so a few threads serve dozens of targets; the
# rest is headroom for endpoints that hang until their read timeout.
SHARED_THREADS = _SharedThreads(16)

log = logging.getLogger("sparki.s3")
# botocore's debug logging prints request headers (the access key id is in them).
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PROBE_OPERATIONS = ("put", "get", "head", "delete")
PROBE_REASONS = ("timeout", "connect", "auth", "no_bucket", "throttled", "checksum", "other")
# S3 answers in tens to hundreds of milliseconds; 0.05, 0.1 and 0.2 are bucket edges.
PROBE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
REQUEST_OPERATIONS = ("get", "put", "delete", "head", "post", "list", "select", "other")
ERROR_CLASSES = ("4xx", "5xx")
DIRECTIONS = ("download", "upload")
LATENCY_KINDS = ("first_byte", "total")

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

# Published S3 Standard list price (us-east-1, first 50 TB), dollars per GB-month.
DEFAULT_PRICES = {"StandardStorage": 0.023}
BYTES_PER_GB = float(2**30)  # AWS bills storage in binary gigabytes

AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "RequestExpired",
    "RequestTimeTooSkewed",
}
PERMISSION_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AccountProblem",
    "Forbidden",
    "403",
}
THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "503",
}
CHECKSUM_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
NO_BUCKET_CODES = {"NoSuchBucket"}

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STATISTIC = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d{1,2})?)$")
_URL_PATH = re.compile(r"(https?://[^/\s\"']+)[^\s\"']*")
_REGION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --- config ------------------------------------------------------------------------------


def _bucket_name(value: str) -> str:
    if not _BUCKET_NAME.match(value) or ".." in value:
        raise ValueError(
            "not a valid S3 bucket name (3-63 characters: lowercase letters, digits, dots, "
            "hyphens; starting and ending with a letter or digit)"
        )
    return value


def _http_url(value: str | None) -> str | None:
    """Check an endpoint URL without echoing it (it could carry credentials)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use access_key_id and secret_access_key")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.rstrip("/")


class CanaryConfig(Strict):
    """The synthetic PUT/GET/HEAD/DELETE probe."""

    enabled: bool = True
    prefix: str = Field(
        ".sparki-canary/",
        min_length=1,
        max_length=200,
        description="keys are <prefix><random hex>; give it a lifecycle rule (docs/s3.md)",
    )
    object_size: int = Field(1024, ge=1, le=1024 * 1024)
    max_pending_deletes: int = Field(100, ge=1, le=10000)
    pending_deletes_per_poll: int = Field(10, ge=1, le=1000)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or any(ord(c) < 32 for c in value):
            raise ValueError("must not start with / nor contain control characters")
        return value


class InventoryConfig(Strict):
    """Bucket size and object count by listing the bucket.

    For S3 services that have neither CloudWatch storage metrics nor MinIO's usage
    metrics (Ceph RGW, Garage, SeaweedFS, a local test server), so the cost gauge still
    has a size to work from. A listing is one LIST request per 1,000 objects, so it runs
    in the background on its own slow schedule and never holds up a poll.
    """

    enabled: bool = False
    interval: Duration = Field(3600.0, description="at most one listing per this")
    max_objects: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="stop there and export no size: a partial sum would be wrong",
    )


# ListObjectsV2 StorageClass -> the CloudWatch StorageType that the price table uses.
LISTING_STORAGE_TYPES = {
    "STANDARD": "StandardStorage",
    "STANDARD_IA": "StandardIAStorage",
    "ONEZONE_IA": "OneZoneIAStorage",
    "REDUCED_REDUNDANCY": "ReducedRedundancyStorage",
    "INTELLIGENT_TIERING": "IntelligentTieringFAStorage",
    "GLACIER": "GlacierStorage",
    "GLACIER_IR": "GlacierInstantRetrievalStorage",
    "DEEP_ARCHIVE": "DeepArchiveStorage",
}


def _cw_bucket(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class CloudWatchBucket(Strict):
    """One bucket's request metrics: CloudWatch keeps them per (bucket, FilterId)."""

    name: str
    filter_id: str = Field("EntireBucket", min_length=1, max_length=64)

    _check_name = field_validator("name")(_bucket_name)


class CloudWatchConfig(Strict):
    """S3 request and storage metrics from CloudWatch (AWS only)."""

    enabled: bool | None = Field(
        None, description="default: on for AWS (no endpoint_url), off for other S3 services"
    )
    endpoint_url: str | None = None
    region: str | None = None
    buckets: tuple[Annotated[CloudWatchBucket, BeforeValidator(_cw_bucket)], ...] = Field(
        (), description="default: the target's bucket with FilterId EntireBucket"
    )
    period: Duration = 60.0
    delay: Duration = Field(600.0, description="how long to wait for CloudWatch to settle")
    interval: Duration = Field(300.0, description="at most one request-metrics query per this")
    lookback: Duration | None = Field(
        None, description="history to count on the first query; default none"
    )
    max_catchup: Duration = 86400.0
    latency_statistics: tuple[str, ...] = ("Average", "Maximum")
    request_metrics: bool = True
    storage_metrics: bool = True
    storage_interval: Duration = 3600.0
    max_attempts: int = Field(3, ge=1, le=10)

    _check_url = field_validator("endpoint_url")(_http_url)

    @field_validator("period")
    @classmethod
    def _period(cls, value: float) -> float:
        if value != int(value) or (int(value) not in (1, 5, 10, 30) and int(value) % 60):
            raise ValueError("must be 1, 5, 10, 30 seconds or a multiple of 60 seconds")
        return value

    @field_validator("latency_statistics")
    @classmethod
    def _statistics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for stat in value:
            if not _STATISTIC.match(stat):
                raise ValueError(
                    f"{stat!r} is not a CloudWatch statistic (Average, Maximum, Minimum, "
                    "SampleCount, Sum or a percentile such as p95)"
                )
        if len(set(value)) != len(value):
            raise ValueError("statistics must not repeat")
        return value

    @model_validator(mode="after")
    def _unique_buckets(self) -> CloudWatchConfig:
        names = [b.name for b in self.buckets]
        if len(set(names)) != len(names):
            raise ValueError(
                "buckets: each bucket at most once (several FilterIds of one bucket would "
                "count the same requests twice)"
            )
        return self


class MinioConfig(Strict):
    """MinIO's own Prometheus metrics, mapped onto the sparki_s3_* names."""

    enabled: bool = False
    version: Literal["v2", "v3"] = "v2"
    node_urls: tuple[str, ...] = Field(
        (),
        description="base URL of each node (v3 request metrics are per node); "
        "default: the target's endpoint_url",
    )
    bearer_token: SecretStr | None = None
    buckets: tuple[str, ...] | None = Field(
        None, description='default: the target\'s bucket; ["*"] for every bucket (v2 only)'
    )
    api_path: str | None = None
    usage_path: str | None = None
    verify_tls: bool = True

    @model_validator(mode="before")
    @classmethod
    def _token_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "bearer_token_file" not in data:
            return data
        data = dict(data)
        path = data.pop("bearer_token_file")
        if data.get("bearer_token") is not None:
            raise ValueError("set either bearer_token or bearer_token_file, not both")
        if not isinstance(path, str) or not path:
            raise ValueError("bearer_token_file must be a file path")
        try:
            with open(path, encoding="utf-8") as f:
                data["bearer_token"] = f.read().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"bearer_token_file: cannot read {path}: {exc.strerror}") from None
        return data

    @field_validator("node_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(_http_url(v)) for v in value)

    @field_validator("api_path", "usage_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and value != ("*",):
            for name in value:
                _bucket_name(name)
        return value


class S3Config(TargetConfig):
    """One S3 bucket (AWS or any S3-compatible service such as MinIO)."""

    secret_fields = ("access_key_id", "secret_access_key", "session_token")
    known_collectors = tuple(c.name for c in COLLECTORS)

    bucket: str
    endpoint_url: str | None = Field(None, description="unset for AWS; e.g. http://minio:9000")
    region: str | None = Field(None, description="default: the AWS config/env, else us-east-1")
    path_style: bool | None = Field(
        None, description="path-style addressing; default: on when endpoint_url is set"
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    connect_timeout: Duration | None = Field(None, description="default: 30% of poll_timeout")
    read_timeout: Duration | None = Field(None, description="default: 50% of poll_timeout")
    max_workers: int = Field(
        3, ge=2, le=16, description="boto3 calls at once (threads of the shared S3 pool)"
    )
    canary: CanaryConfig = CanaryConfig()
    cloudwatch: CloudWatchConfig = CloudWatchConfig()
    minio: MinioConfig = MinioConfig()
    inventory: InventoryConfig = InventoryConfig()
    prices: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="dollars per GB-month (2^30 bytes) by CloudWatch StorageType",
    )

    _check_bucket = field_validator("bucket")(_bucket_name)
    _check_url = field_validator("endpoint_url")(_http_url)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError("not a region name such as us-east-1")
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for storage_class, price in value.items():
            if not storage_class or not math.isfinite(price) or price < 0:
                raise ValueError("prices are non-negative dollars per GB-month by storage type")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "set both access_key_id and secret_access_key, or neither (to use the AWS "
                "default credential chain)"
            )
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        if self.cloudwatch_enabled and self.minio.enabled:
            raise ValueError(
                "enable either cloudwatch or minio metrics on one target, not both: they "
                "would count the same requests twice"
            )
        if self.minio.enabled and not (self.minio.node_urls or self.endpoint_url):
            raise ValueError("minio metrics need endpoint_url or minio.node_urls")
        if self.minio.version == "v2" and len(self.minio.node_urls) > 1:
            raise ValueError(
                "minio.node_urls: version v2 serves cluster-wide bucket metrics from any "
                "node; give one URL (several would count every request several times)"
            )
        if self.minio.enabled and self.minio.version == "v3" and self.minio.buckets == ("*",):
            raise ValueError('minio.buckets: "*" works with version v2 only; list the buckets')
        if not (self.canary.enabled or self.cloudwatch_enabled or self.minio.enabled):
            raise ValueError("enable at least one of canary, cloudwatch and minio")
        return self

    @property
    def cloudwatch_enabled(self) -> bool:
        if self.cloudwatch.enabled is not None:
            return self.cloudwatch.enabled
        return self.endpoint_url is None

    def cloudwatch_buckets(self) -> tuple[CloudWatchBucket, ...]:
        return self.cloudwatch.buckets or (CloudWatchBucket(name=self.bucket),)

    def minio_buckets(self) -> set[str] | None:
        if self.minio.buckets == ("*",):
            return None
        return set(self.minio.buckets or (self.bucket,))

    def extra_secrets(self) -> list[str]:
        token = self.minio.bearer_token
        return [token.get_secret_value()] if token and token.get_secret_value() else []


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One target from MINIO_ENDPOINT / MINIO_ACCESS_KEY / MINIO_SECRET_KEY / S3_BUCKET.

    With MINIO_ENDPOINT, a MinIO (or other S3-compatible) target; ``host:port`` without
    a scheme means https unless MINIO_SECURE is false, as the platform's MinIO client
    does. With only S3_BUCKET, an AWS target using the default credential chain.
    SPARKI_MINIO_METRICS_TOKEN (or SPARKI_MINIO_METRICS=true for a public endpoint)
    turns MinIO's metrics on.
    """
    endpoint = env.get("MINIO_ENDPOINT", "").strip()
    bucket = env.get("S3_BUCKET", "").strip()
    if not endpoint and not bucket:
        return []
    target: dict[str, Any] = {
        "name": env.get("SPARKI_S3_TARGET", "minio" if endpoint else "s3"),
        "bucket": bucket or "sparki-platform",
    }
    if endpoint:
        if "://" not in endpoint:
            secure = _truthy(env.get("MINIO_SECURE", env.get("MINIO_USE_SSL", "true")))
            endpoint = ("https://" if secure else "http://") + endpoint
        target["endpoint_url"] = endpoint
        if env.get("MINIO_ACCESS_KEY"):
            target["access_key_id"] = env["MINIO_ACCESS_KEY"]
        if env.get("MINIO_SECRET_KEY"):
            target["secret_access_key"] = env["MINIO_SECRET_KEY"]
        if env.get("SPARKI_MINIO_METRICS_TOKEN"):
            target["minio"] = {
                "enabled": True,
                "bearer_token": env["SPARKI_MINIO_METRICS_TOKEN"],
            }
        elif _truthy(env.get("SPARKI_MINIO_METRICS", "")):
            target["minio"] = {"enabled": True}
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        target["region"] = region
    return [target]


# --- error classification ----------------------------------------------------------------


class ChecksumMismatch(Exception):
    """The canary read back something other than what it wrote."""


class SourceError(Exception):
    """A data source answered, but not with what we can use."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _client_error(exc: BaseException) -> tuple[str, int] | None:
    """(error code, HTTP status) of a botocore ClientError, else None."""
    if not isinstance(exc, _bexc.ClientError):
        return None
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    return str(error.get("Code") or ""), int(status)


def probe_reason(exc: BaseException) -> str:
    """The canary's reason for a failed operation, from the fixed set PROBE_REASONS."""
    if isinstance(exc, ChecksumMismatch):
        return "checksum"
    if isinstance(exc, _bexc.ConnectTimeoutError | _bexc.ReadTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, _bexc.NoCredentialsError | _bexc.PartialCredentialsError):
        return "auth"
    if isinstance(exc, _bexc.EndpointConnectionError | _bexc.ConnectionClosedError):
        return "connect"
    if isinstance(exc, _bexc.ConnectionError | _bexc.SSLError | ConnectionError):
        return "connect"
    info = _client_error(exc)
    if info is not None:
        code, status = info
        if code in NO_BUCKET_CODES:
            return "no_bucket"
        if code in AUTH_CODES or code in PERMISSION_CODES or status in (401, 403):
            return "auth"
        if code in THROTTLE_CODES or status in (429, 503):
            return "throttled"
        if code in CHECKSUM_CODES:
            return "checksum"
        return "other"
    if isinstance(exc, OSError):
        return "connect"
    return "other"


def _describe(exc: BaseException) -> str:
    """A short message for logs and errors, built from the error, never from a request."""
    info = _client_error(exc)
    if info is not None:
        code, status = info
        response = getattr(exc, "response", None) or {}
        message = str((response.get("Error") or {}).get("Message") or "").strip()
        text = f"{code or 'error'} (HTTP {status})" + (f": {message}" if message else "")
    elif isinstance(exc, ChecksumMismatch | SourceError | ExpositionError):
        text = str(exc)
    else:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        # botocore names the request URL; keep scheme://host:port only, so the message
        # stays the same from poll to poll (the canary's key is random) and one log
        # line per change really is one line.
        detail = _URL_PATH.sub(r"\1", detail)
        text = type(exc).__name__ + (f": {detail}" if detail else "")
    return text if len(text) <= 300 else text[:297] + "..."


def classify(exc: BaseException) -> PollError:
    """Map boto3, aiohttp and parsing errors to the core's reasons, with a safe message."""
    if isinstance(exc, PollError):
        return exc
    text = _describe(exc)
    if isinstance(exc, SourceError):
        return PollError(exc.reason, text)
    if isinstance(exc, ExpositionError):
        return PollError(Reason.PROTOCOL, text)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        return PollError(Reason.TIMEOUT, text)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return PollError(Reason.CONNECT, text)
    if isinstance(exc, aiohttp.ClientError):
        return PollError(Reason.PROTOCOL, text)
    info = _client_error(exc)
    if info is not None:
        code, status = info
        if code in PERMISSION_CODES or (status == 403 and code not in AUTH_CODES):
            return PollError(Reason.PERMISSION, text)
        if code in AUTH_CODES or status == 401:
            return PollError(Reason.AUTH, text)
        return PollError(Reason.PROTOCOL if 400 <= status < 500 else Reason.OTHER, text)
    reason = probe_reason(exc)
    core = {
        "timeout": Reason.TIMEOUT,
        "connect": Reason.CONNECT,
        "auth": Reason.AUTH,
    }.get(reason, Reason.OTHER)
    return PollError(core, text)


# --- snapshot ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Snapshot:
    """Everything one poll learned, immutable, ready to be turned into families."""

    target: str
    bucket: str
    canary: bool
    probe_histograms: tuple[tuple[str, HistogramSnapshot], ...]
    probes: tuple[tuple[str, int], ...]
    probe_errors: tuple[tuple[str, str, int], ...]
    pending_deletes: int
    cleanups: tuple[tuple[str, int], ...]
    requests: tuple[tuple[str, str, float], ...]  # bucket, operation, total
    request_errors: tuple[tuple[str, str, float], ...]  # bucket, class, total
    transferred: tuple[tuple[str, str, float], ...]  # bucket, direction, bytes
    latency: tuple[tuple[str, str, str, float], ...]  # bucket, kind, statistic, seconds
    sizes: tuple[tuple[str, str, float], ...]  # bucket, storage class, bytes
    objects: tuple[tuple[str, float], ...]
    costs: tuple[tuple[str, str, float], ...]  # bucket, storage class, dollars/month
    request_metrics_available: tuple[tuple[str, bool], ...]
    capabilities: tuple[tuple[str, bool], ...]
    cloudwatch_calls: tuple[tuple[str, int], ...] | None
    cloudwatch_metrics_requested: int | None
    source_errors: tuple[tuple[str, str, int], ...]


# --- the target ----------------------------------------------------------------------------


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: its outcome is handled elsewhere or not needed."""
    if not future.cancelled():
        future.exception()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class S3Target:
    """Polls one bucket; keeps the boto3 clients and everything counted across polls."""

    def __init__(self, config: S3Config, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.interval = global_config.interval_for(config)
        self.connect_timeout = min(
            config.connect_timeout or max(0.2, min(5.0, 0.3 * self.timeout)), 0.9 * self.timeout
        )
        self.read_timeout = min(
            config.read_timeout or max(0.3, min(10.0, 0.5 * self.timeout)), 0.9 * self.timeout
        )
        SHARED_THREADS.attach()
        self._slots = asyncio.Semaphore(config.max_workers)
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self.clock: Callable[[], float] = time.time  # wall clock for CloudWatch windows
        self.s3: Any = None
        self.cloudwatch: Any = None
        self._clients_lock = asyncio.Lock()
        self.http: aiohttp.ClientSession | None = None
        self.reported: dict[str, str | None] = {}
        self.source_errors: Counter[tuple[str, str]] = Counter()
        self.source_ok: dict[str, bool] = {}

        # canary
        self.histograms = {op: HistogramState(PROBE_BUCKETS) for op in PROBE_OPERATIONS}
        self.probes: Counter[str] = Counter()
        self.probe_errors: Counter[tuple[str, str]] = Counter()
        self.pending: dict[str, None] = {}  # keys that may exist, oldest first
        self.cleanups: Counter[str] = Counter()

        # request counters shared by CloudWatch and MinIO: (bucket, label) -> total
        self.requests: dict[tuple[str, str], float] = {}
        self.request_errors: dict[tuple[str, str], float] = {}
        self.transferred: dict[tuple[str, str], float] = {}
        self.sizes: dict[tuple[str, str], float] = {}
        self.objects: dict[str, float] = {}
        self.inventory_task: asyncio.Task[tuple[dict[str, float], int] | None] | None = None
        self.inventory_next = 0.0  # monotonic

        # CloudWatch
        self.cw_end: float | None = None
        self.storage_next = 0.0  # monotonic
        self.latency: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (value, ts)
        self.listed: set[str] | None = None  # buckets with request metrics in ListMetrics
        self.data_seen: set[str] = set()
        self.cw_calls: Counter[str] = Counter()
        self.cw_metrics = 0
        self._cw_lock = threading.Lock()
        if config.cloudwatch_enabled:
            for b in config.cloudwatch_buckets():
                self._init_counters(b.name)

        # MinIO
        self.minio_tracker = CounterTracker()
        if config.minio.enabled:
            for name in sorted(config.minio_buckets() or ()):
                self._init_counters(name)

    # -- helpers --------------------------------------------------------------------------

    def _init_counters(self, bucket: str) -> None:
        for op in REQUEST_OPERATIONS:
            self.requests.setdefault((bucket, op), 0.0)
        for cls in ERROR_CLASSES:
            self.request_errors.setdefault((bucket, cls), 0.0)
        for direction in DIRECTIONS:
            self.transferred.setdefault((bucket, direction), 0.0)

    def _report(self, key: str, problem: str | None, message: str, **fields: Any) -> None:
        """Log once per change of ``problem`` for ``key`` (None means fine again)."""
        if self.reported.get(key, "__unset__") == problem:
            return
        first = key not in self.reported
        self.reported[key] = problem
        if problem is None:
            if not first:
                log.info(message, extra=kv(target=self.config.name, **fields))
            return
        log.warning(message, extra=kv(target=self.config.name, problem=problem, **fields))

    async def _submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Start ``fn`` on the shared pool once this target has a free slot.

        The slot is given back when the call really ends (in its thread), not when a
        waiter gives up on it: an abandoned call still holds a thread until it returns.
        """
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            call = SHARED_THREADS.pool().submit(fn)
        except BaseException:
            self._slots.release()
            raise
        self._inflight.add(call)

        def done(_: concurrent.futures.Future[Any]) -> None:
            self._inflight.discard(call)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self._slots.release)

        call.add_done_callback(done)
        return asyncio.wrap_future(call, loop=loop)

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await (await self._submit(fn))

    # -- clients --------------------------------------------------------------------------

    def _make_clients(self) -> tuple[Any, Any]:
        cfg = self.config
        session = _boto3.session.Session(
            botocore_session=_botocore_session(),
            aws_access_key_id=cfg.access_key_id.get_secret_value() if cfg.access_key_id else None,
            aws_secret_access_key=(
                cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
            ),
            aws_session_token=cfg.session_token.get_secret_value() if cfg.session_token else None,
            region_name=cfg.region,
        )
        region = cfg.region or session.region_name or "us-east-1"
        path_style = cfg.path_style if cfg.path_style is not None else bool(cfg.endpoint_url)
        verify: bool | str = cfg.ca_file or cfg.verify_tls

        def client_config(attempts: int, **extra: Any) -> Any:
            kwargs: dict[str, Any] = {
                "region_name": region,
                "connect_timeout": self.connect_timeout,
                "read_timeout": self.read_timeout,
                # total_max_attempts counts the first try; max_attempts would add one.
                "retries": {"total_max_attempts": attempts, "mode": "standard"},
                "max_pool_connections": cfg.max_workers,
                "user_agent_extra": "sparki-exporter",
                **extra,
            }
            try:
                # Flexible checksums (botocore >= 1.36) break older MinIO and moto; the
                # canary compares contents itself.
                return _bconfig.Config(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    **kwargs,
                )
            except TypeError:
                return _bconfig.Config(**kwargs)

        s3 = session.client(
            "s3",
            endpoint_url=cfg.endpoint_url,
            config=client_config(1, s3={"addressing_style": "path" if path_style else "auto"}),
            verify=verify,
        )
        # "Expect: 100-continue" makes a PUT wait up to a second for an interim answer
        # before sending its body: pointless for a 1 KiB canary, and it would let a hung
        # endpoint cost more than read_timeout.
        s3.meta.events.unregister("before-call.s3", _bhandlers.add_expect_header)
        cloudwatch = None
        if cfg.cloudwatch_enabled:
            cw_config = client_config(cfg.cloudwatch.max_attempts)
            if cfg.cloudwatch.region:
                cw_config = cw_config.merge(_bconfig.Config(region_name=cfg.cloudwatch.region))
            cloudwatch = session.client(
                "cloudwatch",
                endpoint_url=cfg.cloudwatch.endpoint_url,
                config=cw_config,
                verify=verify,
            )
        return s3, cloudwatch

    async def _clients(self) -> None:
        async with self._clients_lock:
            if self.s3 is None:
                self.s3, self.cloudwatch = await self._run(self._make_clients)

    # -- lifecycle ------------------------------------------------------------------------

    async def reset(self) -> None:
        """boto3 drops broken connections itself; only the MinIO HTTP session is renewed."""
        http, self.http = self.http, None
        if http is not None and not http.closed:
            await http.close()

    async def close(self) -> None:
        """Best effort: delete leftover canary objects quickly, then release everything."""
        try:
            if self.pending and self.s3 is not None:
                await asyncio.wait_for(self._retry_pending(limit=20), 1.5)
        except Exception:  # noqa: S110 (best effort at shutdown)
            pass
        if self.pending:
            log.warning(
                "canary objects may be left behind; the lifecycle rule on the prefix removes them",
                extra=kv(target=self.config.name, objects=len(self.pending)),
            )
        if self.inventory_task is not None:
            self.inventory_task.cancel()
            with contextlib.suppress(BaseException):
                await self.inventory_task
        await self.reset()
        for client in (self.s3, self.cloudwatch):
            if client is not None and hasattr(client, "close"):
                try:
                    client.close()
                except Exception:  # noqa: S110 (closing is best effort)
                    pass
        for call in list(self._inflight):
            call.cancel()  # only calls still queued; running ones end by their timeouts
        SHARED_THREADS.detach()

    # -- poll -----------------------------------------------------------------------------

    async def poll(self) -> S3Snapshot:
        try:
            await self._clients()
        except Exception as exc:
            raise classify(exc) from None
        parts: list[tuple[str, Any]] = []
        if self.config.canary.enabled:
            parts.append(("canary", self._canary()))
        if self.config.cloudwatch_enabled:
            parts.append(("cloudwatch", self._cloudwatch_part()))
        if self.config.minio.enabled:
            parts.append(("minio", self._minio_part()))
        if self.config.inventory.enabled:
            self._inventory_part()
        results: list[PollError | None] = list(await asyncio.gather(*(c for _, c in parts)))
        outcome = dict(zip((name for name, _ in parts), results, strict=True))
        if self.config.canary.enabled:
            failed = outcome["canary"]
            if failed is not None:
                # The target is down, but its failed canary attempts are data: export
                # them now, so the failure ratio rises while the storage is unusable.
                failed.snapshot = self._snapshot()
                raise failed
        else:
            errors = [e for e in results if e is not None]
            if errors and len(errors) == len(results):
                raise errors[0]
        return self._snapshot()

    # -- canary ---------------------------------------------------------------------------

    async def _op(self, op: str, fn: Callable[[], None]) -> BaseException | None:
        """Run one timed canary operation on the pool; record it even if we stop waiting."""

        def timed() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        future = await self._submit(timed)

        def record(fut: asyncio.Future[float]) -> None:
            if fut.cancelled():
                return  # never ran
            self.probes[op] += 1
            exc = fut.exception()
            if exc is None:
                self.histograms[op].observe(fut.result())
            else:
                self.probe_errors[(op, probe_reason(exc))] += 1

        future.add_done_callback(record)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc
        return None

    async def _canary(self) -> PollError | None:
        cfg = self.config
        bucket = cfg.bucket
        key = f"{cfg.canary.prefix}{uuid.uuid4().hex}"
        body = os.urandom(cfg.canary.object_size)
        self._remember(key)  # from before the PUT is sent: it may land even if we time out
        s3 = self.s3

        def put() -> None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)

        def get() -> None:
            response = s3.get_object(Bucket=bucket, Key=key)
            stream = response["Body"]
            try:
                data = stream.read()
            finally:
                stream.close()
            if data != body:
                raise ChecksumMismatch(
                    f"GET returned {len(data)} bytes that differ from the {len(body)} written"
                )

        def head() -> None:
            length = s3.head_object(Bucket=bucket, Key=key).get("ContentLength")
            if length != len(body):
                raise ChecksumMismatch(f"HEAD reports {length} bytes, {len(body)} were written")

        def delete() -> None:
            s3.delete_object(Bucket=bucket, Key=key)

        failed = False
        error = await self._op("put", put)
        if error is not None:
            failed = True
            reason = probe_reason(error)
            if reason in ("connect", "auth", "no_bucket", "throttled"):
                self.pending.pop(key, None)  # the PUT was refused: nothing was written
            if reason in ("timeout", "connect", "auth", "no_bucket"):
                # The bucket is unusable: the poll fails. A timed-out PUT's key stays
                # pending; it is deleted once the endpoint answers again.
                return self._canary_failure(reason, error)
            self._note_canary_problem("put", reason, error)
        else:
            for op, fn in (("get", get), ("head", head)):
                error = await self._op(op, fn)
                if error is not None:
                    failed = True
                    reason = probe_reason(error)
                    self._note_canary_problem(op, reason, error)
                    if reason in ("timeout", "connect"):
                        return None  # the endpoint stopped answering: DELETE on a later poll
        if key in self.pending:
            error = await self._op("delete", delete)
            if error is not None:
                self._note_canary_problem("delete", probe_reason(error), error)
                return None
            self.pending.pop(key, None)
        if not failed:
            self._report("canary", None, "canary succeeds again", bucket=cfg.bucket)
        if self.pending:
            await self._retry_pending(limit=cfg.canary.pending_deletes_per_poll)
        return None

    def _canary_failure(self, reason: str, error: BaseException) -> PollError:
        text = _describe(error)
        if reason == "no_bucket":
            return PollError(
                Reason.OTHER, f"bucket {self.config.bucket!r} does not exist (NoSuchBucket)"
            )
        if reason == "auth":
            info = _client_error(error)
            code = info[0] if info else ""
            if code in PERMISSION_CODES:
                return PollError(Reason.PERMISSION, f"canary PUT refused: {text}")
            return PollError(Reason.AUTH, f"canary PUT rejected the credentials: {text}")
        if reason == "timeout":
            return PollError(Reason.TIMEOUT, f"canary PUT timed out: {text}")
        return PollError(Reason.CONNECT, f"canary PUT could not connect: {text}")

    def _note_canary_problem(self, op: str, reason: str, error: BaseException) -> None:
        self._report(
            "canary",
            f"{op}:{reason}",
            "canary operation failed",
            bucket=self.config.bucket,
            operation=op,
            reason=reason,
            error=_describe(error),
        )

    def _remember(self, key: str) -> None:
        self.pending[key] = None
        limit = self.config.canary.max_pending_deletes
        if len(self.pending) > limit:
            dropped = len(self.pending) - limit
            for old in list(self.pending)[:dropped]:
                del self.pending[old]
            self._report(
                "pending_overflow",
                "overflow",
                "too many canary objects awaiting deletion; forgetting the oldest (the "
                "lifecycle rule on the prefix removes them)",
                bucket=self.config.bucket,
                limit=limit,
            )

    async def _retry_pending(self, limit: int) -> None:
        """Delete keys left by earlier polls, oldest first; stop at the first failure."""
        s3, bucket = self.s3, self.config.bucket
        for key in list(self.pending)[:limit]:
            if key not in self.pending:
                continue

            def delete(key: str = key) -> None:
                s3.delete_object(Bucket=bucket, Key=key)

            future = await self._submit(delete)
            future.add_done_callback(_retrieve)  # also when nobody waits any more
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.cleanups["failed"] += 1
                return
            self.pending.pop(key, None)
            self.cleanups["deleted"] += 1
        if not self.pending:
            self.reported.pop("pending_overflow", None)

    # -- CloudWatch -----------------------------------------------------------------------

    def _count_cw(self, api: str, metrics: int = 0) -> None:
        with self._cw_lock:
            self.cw_calls[api] += 1
            self.cw_metrics += metrics

    def _source_result(self, source: str, error: BaseException | None) -> PollError | None:
        if error is None:
            self.source_ok[source] = True
            self._report(f"source:{source}", None, f"{source} metrics available again")
            return None
        failure = classify(error)
        self.source_ok[source] = False
        self.source_errors[(source, failure.reason.value)] += 1
        self._report(
            f"source:{source}",
            f"{failure.reason.value}:{failure.message}",
            f"{source} metrics unavailable; the canary and other sources continue",
            reason=failure.reason.value,
            error=failure.message,
        )
        return failure

    async def _cloudwatch_part(self) -> PollError | None:
        cw = self.config.cloudwatch
        try:
            now_mono = time.monotonic()
            if (cw.storage_metrics or cw.request_metrics) and now_mono >= self.storage_next:
                listing = await self._run(self._list_metrics)
                self._apply_listing(*listing)
                # Storage metrics are daily; failures retry on the next poll.
                self.storage_next = now_mono + cw.storage_interval
            if cw.request_metrics:
                await self._request_metrics()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._source_result("cloudwatch", exc)
        return self._source_result("cloudwatch", None)

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
            response = self.cloudwatch.list_metrics(**kwargs)
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
        cw = self.config.cloudwatch
        listed: set[str] | None = set() if cw.request_metrics else None
        queries: list[dict[str, Any]] = []
        keys: dict[str, tuple[str, str]] = {}
        for b in self.config.cloudwatch_buckets():
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
            now = self.clock()
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
        if self.config.cloudwatch.storage_metrics:
            self.sizes = sizes
            self.objects = objects
        if listed is not None:
            self.listed = listed
            self.data_seen = set()
            self._check_availability()

    def _check_availability(self) -> None:
        if self.listed is None:
            return
        for b in self.config.cloudwatch_buckets():
            available = b.name in self.listed or b.name in self.data_seen
            self._report(
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
        cw = self.config.cloudwatch
        period = cw.period
        end = math.floor((self.clock() - cw.delay) / period) * period
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
                extra=kv(target=self.config.name, periods=int((end - longest - start) / period)),
            )
            start = end - longest
        return start, end

    def _request_queries(self) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str, str]]]:
        cw = self.config.cloudwatch
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

        for b in self.config.cloudwatch_buckets():
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
                response = self.cloudwatch.get_metric_data(**kwargs)
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
        data = await self._run(lambda: self._get_metric_data(queries, start, end))
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
        for b in self.config.cloudwatch_buckets():
            name = b.name
            known = 0.0
            for metric, op in CW_REQUESTS.items():
                value = sums.get((name, metric), 0.0)
                known += value
                self.requests[(name, op)] = self.requests.get((name, op), 0.0) + value
            other = max(0.0, sums.get((name, CW_ALL_REQUESTS), 0.0) - known)
            self.requests[(name, "other")] = self.requests.get((name, "other"), 0.0) + other
            for metric, cls in CW_ERRORS.items():
                key = (name, cls)
                self.request_errors[key] = self.request_errors.get(key, 0.0) + sums.get(
                    (name, metric), 0.0
                )
            for metric, direction in CW_BYTES.items():
                key = (name, direction)
                self.transferred[key] = self.transferred.get(key, 0.0) + sums.get(
                    (name, metric), 0.0
                )
        self.latency.update(newest_latency)
        if seen - self.data_seen:
            self.data_seen |= seen
            self._check_availability()

    def _current_latency(self) -> list[tuple[str, str, str, float]]:
        """Latency of the newest settled period with traffic, for a limited time only."""
        cw = self.config.cloudwatch
        hold = cw.delay + max(900.0, 3 * max(cw.interval, cw.period))
        now = self.clock()
        return [
            (bucket, kind, stat, value)
            for (bucket, kind, stat), (value, ts) in sorted(self.latency.items())
            if now - ts <= hold
        ]

    # -- MinIO ----------------------------------------------------------------------------

    def _minio_urls(self) -> tuple[list[str], str | None]:
        m = self.config.minio
        bases = list(m.node_urls) or [str(self.config.endpoint_url)]
        if m.version == "v2":
            return [b + (m.api_path or "/minio/v2/metrics/bucket") for b in bases], None
        names = sorted(self.config.minio_buckets() or ())
        api = (m.api_path or "/minio/metrics/v3/bucket/api") + "?buckets=" + ",".join(names)
        usage = bases[0] + (m.usage_path or "/minio/metrics/v3/cluster/usage/buckets")
        return [b + api for b in bases], usage

    def _http_session(self) -> aiohttp.ClientSession:
        if self.http is None or self.http.closed:
            m = self.config.minio
            ssl_arg: ssl.SSLContext | bool = True
            if self.config.ca_file:
                ssl_arg = ssl.create_default_context(cafile=self.config.ca_file)
            elif not (m.verify_tls and self.config.verify_tls):
                ssl_arg = False
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.read_timeout + self.connect_timeout,
                    connect=self.connect_timeout,
                    sock_read=self.read_timeout,
                ),
                connector=aiohttp.TCPConnector(ssl=ssl_arg, limit=4),
            )
        return self.http

    async def _fetch(self, url: str) -> str:
        headers = {"Accept": "text/plain"}
        token = self.config.minio.bearer_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        async with self._http_session().get(url, headers=headers, allow_redirects=False) as r:
            if r.status in (401, 403):
                raise SourceError(
                    Reason.AUTH,
                    f"MinIO metrics endpoint answered HTTP {r.status}: check the bearer token "
                    "(mc admin prometheus generate)",
                )
            if r.status != 200:
                raise SourceError(
                    Reason.PROTOCOL,
                    f"MinIO metrics endpoint answered HTTP {r.status}; check minio.version "
                    "and the URL",
                )
            body = await r.content.read(64 * 1024 * 1024 + 1)
            if len(body) > 64 * 1024 * 1024:
                raise SourceError(Reason.PROTOCOL, "MinIO metrics body larger than 64 MiB")
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                raise SourceError(Reason.PROTOCOL, "MinIO metrics body is not UTF-8") from None

    def _inventory_part(self) -> None:
        """Apply a finished listing, and start the next one when it is due.

        The listing runs as its own task, page by page on the executor, so a bucket of
        100,000 objects costs no poll its deadline.
        """
        task = self.inventory_task
        if task is not None and task.done():
            self.inventory_task = None
            if task.cancelled():
                pass
            elif (exc := task.exception()) is not None:
                self._source_result("inventory", exc)
            else:
                result = task.result()
                self._source_result("inventory", None)
                if result is None:
                    self._report(
                        "inventory:truncated",
                        "truncated",
                        "bucket has more objects than inventory.max_objects; its size is not "
                        "exported (raise the limit, or use CloudWatch or MinIO metrics)",
                        max_objects=self.config.inventory.max_objects,
                    )
                else:
                    self._report("inventory:truncated", None, "bucket listing complete again")
                    sizes, count = result
                    self.sizes = {(self.config.bucket, k): v for k, v in sizes.items()}
                    self.objects = {self.config.bucket: float(count)}
        now = time.monotonic()
        if self.inventory_task is None and now >= self.inventory_next:
            self.inventory_next = now + self.config.inventory.interval
            self.inventory_task = asyncio.get_running_loop().create_task(self._list_bucket())

    async def _list_bucket(self) -> tuple[dict[str, float], int] | None:
        """Sizes by storage type and the object count; None past max_objects."""
        cfg = self.config
        sizes: dict[str, float] = {}
        count = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": cfg.bucket, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = await self._run(partial(self.s3.list_objects_v2, **kwargs))
            for item in page.get("Contents", []):
                key = str(item.get("Key", ""))
                if cfg.canary.enabled and key.startswith(cfg.canary.prefix):
                    continue  # the canary's own objects live for a second
                storage = str(item.get("StorageClass") or "STANDARD")
                name = LISTING_STORAGE_TYPES.get(storage, storage)
                sizes[name] = sizes.get(name, 0.0) + float(item.get("Size", 0))
                count += 1
            if count > cfg.inventory.max_objects:
                return None
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sizes, count

    async def _minio_part(self) -> PollError | None:
        try:
            api_urls, usage_url = self._minio_urls()
            buckets = self.config.minio_buckets()
            bodies = await asyncio.gather(*(self._fetch(u) for u in api_urls))
            usage_body = await self._fetch(usage_url) if usage_url else None
            readings = [
                (url, bucket_reading(parse_exposition(body), buckets))
                for url, body in zip(api_urls, bodies, strict=True)
            ]
            usage = bucket_reading(parse_exposition(usage_body), buckets) if usage_body else None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._source_result("minio", exc)
        # Parsed completely: only now is anything applied.
        sizes: dict[str, float] = {}
        objects: dict[str, float] = {}
        for url, reading in [*readings, *([("usage", usage)] if usage else [])]:
            for bucket in reading.buckets:
                self._init_counters(bucket)
            self.minio_tracker.apply(url, reading.counters)
            for bucket, size in reading.sizes.items():
                sizes[bucket] = max(sizes.get(bucket, 0.0), size)
            for bucket, count in reading.objects.items():
                objects[bucket] = max(objects.get(bucket, 0.0), count)
        dest = {"requests": self.requests, "errors": self.request_errors, "bytes": self.transferred}
        for (kind, bucket, key), total in self.minio_tracker.totals.items():
            dest[kind][(bucket, key)] = total
        # MinIO's usage is not split by storage class: it is reported as StandardStorage.
        # Usage appears only once MinIO's scanner has run; until then the last is kept.
        if sizes:
            self.sizes = {(b, "StandardStorage"): v for b, v in sizes.items()}
        if objects:
            self.objects = objects
        return self._source_result("minio", None)

    # -- snapshot -------------------------------------------------------------------------

    def _costs(self) -> list[tuple[str, str, float]]:
        out = []
        for (bucket, storage_class), size in sorted(self.sizes.items()):
            price = self.config.prices.get(storage_class)
            if price is None:
                self._report(
                    f"price:{storage_class}",
                    "no_price",
                    "no price configured for a storage class; its cost is not exported",
                    storage_class=storage_class,
                )
                continue
            out.append((bucket, storage_class, size / BYTES_PER_GB * price))
        return out

    def _snapshot(self) -> S3Snapshot:
        cfg = self.config
        capabilities: list[tuple[str, bool]] = []
        available: list[tuple[str, bool]] = []
        if cfg.cloudwatch_enabled:
            capabilities.append(("cloudwatch", self.source_ok.get("cloudwatch", False)))
            if cfg.cloudwatch.request_metrics and self.listed is not None:
                for b in cfg.cloudwatch_buckets():
                    available.append((b.name, b.name in self.listed or b.name in self.data_seen))
                capabilities.append(("request_metrics", all(v for _, v in available)))
        if cfg.minio.enabled:
            capabilities.append(("minio_metrics", self.source_ok.get("minio", False)))
        if cfg.inventory.enabled and "inventory" in self.source_ok:
            capabilities.append(("inventory", self.source_ok["inventory"]))
        canary = cfg.canary.enabled
        return S3Snapshot(
            target=cfg.name,
            bucket=cfg.bucket,
            canary=canary,
            probe_histograms=tuple((op, self.histograms[op].snapshot()) for op in PROBE_OPERATIONS)
            if canary
            else (),
            probes=tuple((op, self.probes[op]) for op in PROBE_OPERATIONS) if canary else (),
            probe_errors=tuple(
                (op, reason, self.probe_errors[(op, reason)])
                for op in PROBE_OPERATIONS
                for reason in PROBE_REASONS
            )
            if canary
            else (),
            pending_deletes=len(self.pending),
            cleanups=tuple((r, self.cleanups[r]) for r in ("deleted", "failed")) if canary else (),
            requests=tuple((b, op, v) for (b, op), v in sorted(self.requests.items())),
            request_errors=tuple((b, c, v) for (b, c), v in sorted(self.request_errors.items())),
            transferred=tuple((b, d, v) for (b, d), v in sorted(self.transferred.items())),
            latency=tuple(self._current_latency()) if cfg.cloudwatch_enabled else (),
            sizes=tuple((b, s, v) for (b, s), v in sorted(self.sizes.items())),
            objects=tuple(sorted(self.objects.items())),
            costs=tuple(self._costs()),
            request_metrics_available=tuple(available),
            capabilities=tuple(capabilities),
            cloudwatch_calls=tuple(
                (api, self.cw_calls[api]) for api in ("GetMetricData", "ListMetrics")
            )
            if cfg.cloudwatch_enabled
            else None,
            cloudwatch_metrics_requested=self.cw_metrics if cfg.cloudwatch_enabled else None,
            source_errors=tuple(
                (source, reason, self.source_errors[(source, reason)])
                for source in [
                    *(["cloudwatch"] if cfg.cloudwatch_enabled else []),
                    *(["minio"] if cfg.minio.enabled else []),
                    *(["inventory"] if cfg.inventory.enabled else []),
                ]
                for reason in [r.value for r in Reason]
            ),
        )


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: S3Snapshot) -> list[Metric]:
    t = snap.target
    out: list[Metric] = []
    if snap.canary:
        out.append(
            histogram_family(
                "sparki_s3_probe_duration_seconds",
                "Canary operations on a small object the exporter writes and removes "
                "(successful operations only)",
                ["target", "bucket", "operation"],
                (([t, snap.bucket, op], h) for op, h in snap.probe_histograms),
            )
        )
        probes = CounterMetricFamily(
            "sparki_s3_probes",
            "Canary operations attempted",
            labels=["target", "bucket", "operation"],
        )
        for op, count in snap.probes:
            probes.add_metric([t, snap.bucket, op], count)
        errors = CounterMetricFamily(
            "sparki_s3_probe_errors",
            "Canary operations failed, by reason (timeout, connect, auth, no_bucket, "
            "throttled, checksum, other)",
            labels=["target", "bucket", "operation", "reason"],
        )
        for op, reason, count in snap.probe_errors:
            errors.add_metric([t, snap.bucket, op, reason], count)
        pending = GaugeMetricFamily(
            "sparki_s3_canary_pending_deletes",
            "Canary objects whose DELETE has not succeeded yet; retried every poll",
            labels=["target", "bucket"],
        )
        pending.add_metric([t, snap.bucket], snap.pending_deletes)
        cleanups = CounterMetricFamily(
            "sparki_s3_canary_cleanups",
            "Retried deletions of canary objects left by earlier polls, by result",
            labels=["target", "bucket", "result"],
        )
        for result, count in snap.cleanups:
            cleanups.add_metric([t, snap.bucket, result], count)
        out += [probes, errors, pending, cleanups]

    requests = CounterMetricFamily(
        "sparki_s3_requests",
        "Requests on the bucket from CloudWatch request metrics or MinIO; summing "
        "all operations gives all requests",
        labels=["target", "bucket", "operation"],
    )
    for bucket, op, value in snap.requests:
        requests.add_metric([t, bucket, op], value)
    request_errors = CounterMetricFamily(
        "sparki_s3_request_errors",
        "Requests on the bucket that failed, by HTTP status class",
        labels=["target", "bucket", "class"],
    )
    for bucket, cls, value in snap.request_errors:
        request_errors.add_metric([t, bucket, cls], value)
    transferred = CounterMetricFamily(
        "sparki_s3_transferred_bytes",
        "Bytes downloaded from and uploaded to the bucket",
        labels=["target", "bucket", "direction"],
    )
    for bucket, direction, value in snap.transferred:
        transferred.add_metric([t, bucket, direction], value)
    latency = GaugeMetricFamily(
        "sparki_s3_request_latency_seconds",
        "Request latency of the newest settled CloudWatch period with traffic, by kind "
        "(first_byte, total) and statistic",
        labels=["target", "bucket", "kind", "statistic"],
    )
    for bucket, kind, stat, value in snap.latency:
        latency.add_metric([t, bucket, kind, stat], value)
    out += [requests, request_errors, transferred, latency]

    size = GaugeMetricFamily(
        "sparki_s3_bucket_size_bytes",
        "Bytes stored, by storage class (CloudWatch's daily BucketSizeBytes, or MinIO usage)",
        labels=["target", "bucket", "storage_class"],
    )
    for bucket, storage_class, value in snap.sizes:
        size.add_metric([t, bucket, storage_class], value)
    objects = GaugeMetricFamily(
        "sparki_s3_bucket_objects", "Objects stored in the bucket", labels=["target", "bucket"]
    )
    for bucket, value in snap.objects:
        objects.add_metric([t, bucket], value)
    cost = GaugeMetricFamily(
        "sparki_s3_storage_cost_dollars_per_month",
        "Bucket size times the configured price per GB-month of its storage class",
        labels=["target", "bucket", "storage_class"],
    )
    for bucket, storage_class, value in snap.costs:
        cost.add_metric([t, bucket, storage_class], value)
    out += [size, objects, cost]

    if snap.request_metrics_available:
        avail = GaugeMetricFamily(
            "sparki_s3_request_metrics_available",
            "1 when CloudWatch has request metrics for the bucket's FilterId, 0 when it has "
            "none (the log says how to add a metrics configuration)",
            labels=["target", "bucket"],
        )
        for bucket, ok in snap.request_metrics_available:
            avail.add_metric([t, bucket], 1 if ok else 0)
        out.append(avail)
    if snap.cloudwatch_calls is not None:
        calls = CounterMetricFamily(
            "sparki_s3_cloudwatch_requests",
            "CloudWatch API calls the exporter made, pages included",
            labels=["target", "api"],
        )
        for api, count in snap.cloudwatch_calls:
            calls.add_metric([t, api], count)
        requested = CounterMetricFamily(
            "sparki_s3_cloudwatch_metrics_requested",
            "Metrics requested in GetMetricData calls, the unit CloudWatch bills",
            labels=["target"],
        )
        requested.add_metric([t], snap.cloudwatch_metrics_requested or 0)
        out += [calls, requested]
    if snap.source_errors:
        source_errors = CounterMetricFamily(
            "sparki_s3_source_errors",
            "Failed reads of CloudWatch or MinIO metrics, by reason",
            labels=["target", "source", "reason"],
        )
        for source, reason, count in snap.source_errors:
            source_errors.add_metric([t, source, reason], count)
        out.append(source_errors)
    if snap.capabilities:
        cap = GaugeMetricFamily(
            "sparki_capability",
            "1 when an optional data source is usable, 0 when it is not "
            "(the log says why and how to fix it)",
            labels=["adapter", "target", "capability"],
        )
        for name, ok in snap.capabilities:
            cap.add_metric(["s3", t, name], 1 if ok else 0)
        out.append(cap)
    return out


def _target(config: Any, global_config: GlobalConfig) -> S3Target:
    return S3Target(config, global_config)
