"""S3 and CloudWatch through moto's server mode, over real HTTP on free ports.

``s3_server`` (session) is shared: tests may create buckets and objects on it but must
not stop it. ``s3_private_server`` is a server of a test's own that it may stop and
start again (same port, same data). moto keeps its state per process, so every
in-process server sees the same buckets and metrics: tests use their own bucket names.
``s3_auth_server`` runs moto in a subprocess with IAM authentication switched on, so
wrong credentials are rejected as AWS would reject them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from fixtures_core import free_port
from moto.server import ThreadedMotoServer

# werkzeug logs one line per request; moto's server runs inside the test process.
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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A shared moto server with ``.bucket`` created. Do not stop it."""
    server = MotoServer(bucket="sparki-test").start()
    server.create_bucket(server.bucket)
    yield server
    server.stop()


@pytest.fixture
def s3_private_server() -> Iterator[MotoServer]:
    """A moto server of the test's own, with its own bucket; the test may stop and start it."""
    server = MotoServer().start()
    server.create_bucket(server.bucket)
    yield server
    server.stop()


class AuthMotoServer(MotoServer):
    """moto in a subprocess with IAM authentication on; ``access_key`` is a real IAM key."""

    def __init__(self) -> None:
        super().__init__()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AuthMotoServer:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave the subprocess behind when setup fails
            raise

    def _start(self) -> AuthMotoServer:
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1):  # noqa: S310
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server subprocess did not start") from None
                time.sleep(0.1)
        # Set up while authentication is still off, then switch it on.
        iam = self.client("iam")
        iam.create_user(UserName="sparki-exporter")
        key = iam.create_access_key(UserName="sparki-exporter")["AccessKey"]
        iam.put_user_policy(
            UserName="sparki-exporter",
            PolicyName="sparki",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": ["s3:*", "cloudwatch:*"], "Resource": "*"}
                    ],
                }
            ),
        )
        self.client("s3").create_bucket(Bucket=self.bucket)
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        request = urllib.request.Request(  # noqa: S310
            self.endpoint_url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@pytest.fixture
def s3_auth_server() -> Iterator[AuthMotoServer]:
    """moto with IAM auth: ``.access_key``/``.secret_key`` work, anything else is rejected."""
    server = AuthMotoServer().start()
    yield server
    server.stop()
