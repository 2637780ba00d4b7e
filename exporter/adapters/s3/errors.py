"""How the S3 adapter names failures: boto3, aiohttp and parsing errors to reasons.

Two vocabularies: the canary's fixed ``PROBE_REASONS`` (labels of
sparki_s3_probe_errors_total) and the core's :class:`exporter.adapter.Reason` (the
poll's and the sources' errors). Messages are built from the error's code and text,
never from a request, so no key, URL path or credential reaches a log line or metric.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from typing import Any

import aiohttp

from ...adapter import PollError, Reason
from .minio_format import ExpositionError

# botocore ships no type information; it is used as Any on purpose.
_bexc: Any = importlib.import_module("botocore.exceptions")

PROBE_OPERATIONS = ("put", "get", "head", "delete")
PROBE_REASONS = ("timeout", "connect", "auth", "no_bucket", "throttled", "checksum", "other")

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


_URL_PATH = re.compile(r"(https?://[^/\s\"']+)[^\s\"']*")


class ChecksumMismatch(Exception):
    """The canary read back something other than what it wrote."""


class SourceError(Exception):
    """A data source answered, but not with what we can use."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def client_error(exc: BaseException) -> tuple[str, int] | None:
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
    info = client_error(exc)
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


def describe(exc: BaseException) -> str:
    """A short message for logs and errors, built from the error, never from a request."""
    info = client_error(exc)
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
    text = describe(exc)
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
    info = client_error(exc)
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
