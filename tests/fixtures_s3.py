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
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from devstack.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, unique_bucket

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "MotoServer", "unique_bucket"]


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

    def __init__(self, deny: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.proc: subprocess.Popen[bytes] | None = None
        self.deny = deny  # IAM actions the key is refused (AccessDenied), e.g. one collector's

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
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1):
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
                        {"Effect": "Allow", "Action": ["s3:*", "cloudwatch:*"], "Resource": "*"},
                        *(
                            [{"Effect": "Deny", "Action": list(self.deny), "Resource": "*"}]
                            if self.deny
                            else []
                        ),
                    ],
                }
            ),
        )
        self.client("s3").create_bucket(Bucket=self.bucket)
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        request = urllib.request.Request(
            self.endpoint_url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=5):
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


@pytest.fixture
def s3_refusing_server() -> Iterator[AuthMotoServer]:
    """moto with IAM auth whose key may do everything but read lifecycle rules and list
    multipart uploads: what a least-privilege key without those two grants meets."""
    server = AuthMotoServer(
        deny=("s3:GetLifecycleConfiguration", "s3:ListBucketMultipartUploads")
    ).start()
    yield server
    server.stop()
