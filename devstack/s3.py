"""S3 and CloudWatch through moto's server mode, over real HTTP on a free port.

Shared by the test fixtures (tests/fixtures_s3.py), the benchmarks and the demo.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from .postgres import free_port

# werkzeug logs one line per request; moto's server runs inside this process.
logging.getLogger("werkzeug").setLevel(logging.ERROR)

ACCESS_KEY = "AKIASPARKITEST000001"
SECRET_KEY = "sparki-test-secret-0f3c9a7b"
REGION = "us-east-1"


def unique_bucket(prefix: str = "sparki") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class MotoServer:
    """One moto server (S3, CloudWatch, IAM, ...) on a fixed port, stoppable."""

    def __init__(self, bucket: str | None = None) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.region = REGION
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.bucket = bucket or unique_bucket()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> MotoServer:
        if self._server is None:
            server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            inner = getattr(server, "_server", None)
            if inner is not None:
                inner.server_close()

    def client(self, service: str, **kwargs: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=kwargs.pop("access_key", self.access_key),
            aws_secret_access_key=kwargs.pop("secret_key", self.secret_key),
            config=Config(
                retries={"total_max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=10,
            ),
            **kwargs,
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket()
        self.client("s3").create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        """Every key in the bucket under ``prefix``."""
        s3 = self.client("s3")
        out: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket or self.bucket, Prefix=prefix
        ):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def target(self, name: str, **overrides: Any) -> dict[str, Any]:
        """Exporter config for an ``s3:`` target on this server (canary on the bucket)."""
        target: dict[str, Any] = {
            "name": name,
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
        }
        target.update(overrides)
        return target
