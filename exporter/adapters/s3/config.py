"""The S3 adapter's configuration: one bucket per target, and each collector's section.

Driver-free (pydantic only), so ``check-config`` validates an S3 target without boto3.
Each collector with settings has a section here (``canary:``, ``cloudwatch:``, ...).
Whether a collector runs is decided by :meth:`S3Config.collector_switches` (the
target's ``collectors:`` switches, and the ``enabled`` keys of the sections, which
predate them and keep working) together with the adapter-wide switches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from ...config import Duration, Strict, TargetConfig
from .catalog import COLLECTORS

# Published S3 Standard list price (us-east-1, first 50 TB), dollars per GB-month.
DEFAULT_PRICES = {"StandardStorage": 0.023}

# The storage design's prefixes (large artifacts, build logs, backups, caches): each
# should have a lifecycle rule, or what lands there is kept (and billed) forever.
DESIGN_PREFIXES = ("artifacts/", "logs/", "backups/", "cache/")

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STATISTIC = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d{1,2})?)$")
_REGION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


class MultipartConfig(Strict):
    """Incomplete multipart uploads: started, never completed nor aborted, and billed.

    One ListMultipartUploads page (1,000 uploads) per ``interval`` and up to
    ``max_uploads``; ListParts (bytes) only for the first ``parts_uploads`` uploads,
    since that is one request per upload: past it, their bytes are not exported (a
    partial sum would be wrong).
    """

    interval: Duration = Field(300.0, description="at most one listing per this")
    max_uploads: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="stop listing there; count and age are then lower bounds (logged)",
    )
    parts_uploads: int = Field(
        20,
        ge=0,
        le=10_000,
        description="ListParts for at most this many uploads; more and bytes is not exported",
    )


class LifecycleConfig(Strict):
    """Is there an enabled lifecycle rule covering each prefix the storage design names?"""

    interval: Duration = Field(300.0, description="at most one GetBucketLifecycleConfiguration")
    prefixes: tuple[str, ...] = Field(
        DESIGN_PREFIXES,
        max_length=100,
        description="the prefixes that must each be covered by an enabled rule",
    )

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not prefix or len(prefix) > 1024 or any(ord(c) < 32 for c in prefix):
                raise ValueError("prefixes are 1-1024 characters without control characters")
        if len(set(value)) != len(value):
            raise ValueError("prefixes must not repeat")
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
    multipart: MultipartConfig = MultipartConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
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
        if self.cloudwatch_enabled and self.minio_enabled:
            raise ValueError(
                "enable either cloudwatch or minio metrics on one target, not both: they "
                "would count the same requests twice"
            )
        if self.minio_enabled and not (self.minio.node_urls or self.endpoint_url):
            raise ValueError("minio metrics need endpoint_url or minio.node_urls")
        if self.minio.version == "v2" and len(self.minio.node_urls) > 1:
            raise ValueError(
                "minio.node_urls: version v2 serves cluster-wide bucket metrics from any "
                "node; give one URL (several would count every request several times)"
            )
        if self.minio_enabled and self.minio.version == "v3" and self.minio.buckets == ("*",):
            raise ValueError('minio.buckets: "*" works with version v2 only; list the buckets')
        if not (self.canary_enabled or self.cloudwatch_enabled or self.minio_enabled):
            raise ValueError("enable at least one of canary, cloudwatch and minio")
        return self

    def collector_switches(self) -> dict[str, bool]:
        """This target's own switches: ``collectors:`` first, then the sections' ``enabled``.

        ``canary: {enabled: false}`` and ``collectors: {canary: false}`` say the same;
        ``collectors:`` wins when both are given. CloudWatch is switched off here for a
        non-AWS endpoint unless asked for (other S3 services have no CloudWatch).
        """
        switches: dict[str, bool] = {}
        if "enabled" in self.canary.model_fields_set:
            switches["canary"] = self.canary.enabled
        if self.cloudwatch.enabled is not None:
            switches["cloudwatch"] = self.cloudwatch.enabled
        elif self.endpoint_url is not None:
            switches["cloudwatch"] = False
        if "enabled" in self.minio.model_fields_set:
            switches["minio"] = self.minio.enabled
        if "enabled" in self.inventory.model_fields_set:
            switches["inventory"] = self.inventory.enabled
        switches.update(self.collectors)
        return switches

    def _switched(self, name: str) -> bool:
        default = next(c.default for c in COLLECTORS if c.name == name)
        return self.collector_switches().get(name, default)

    @property
    def canary_enabled(self) -> bool:
        return self._switched("canary")

    @property
    def cloudwatch_enabled(self) -> bool:
        """On for AWS (no endpoint_url) unless switched off; off elsewhere unless asked."""
        return self._switched("cloudwatch")

    @property
    def minio_enabled(self) -> bool:
        return self._switched("minio")

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
