"""MySQL/MariaDB error classification: reasons from error numbers, never from words.

Server errors carry a number (1045 access denied, 1227 missing privilege, ...); the
client library's own errors are numbered from 2000 (2003 cannot connect, 2013 lost
the connection). Messages are rebuilt or cut so that no address or credential is
shown: the server's "Access denied for user 'x'@'host'" names the exporter's host.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

from asyncmy import errors

from ...adapter import PollError, Reason

AUTH_CODES = {1044, 1045, 1049, 1698, 1251, 2059, 1862, 1820}
PERMISSION_CODES = {1142, 1143, 1227, 1370}
CONNECT_CODES = {1040, 1129, 1203, 1053, 1077, 1152, 1156, 1158, 1159, 1160, 1161, 2002, 2003}
CONNECT_CODES |= {2005, 2006, 2013, 2026, 2055}
TIMEOUT_CODES = {1205, 1969, 3024, 1317}
# The client library's numbers: the connection is unusable after these.
CLIENT_ERRORS = range(2000, 3000)

_QUOTED_HOST = re.compile(r"'[^']*'@'[^']*'")
# ('host', port) tuples that socket errors carry.
_HOST_PORT = re.compile(r"\(\s*'[^']*'\s*,\s*\d+[^)]*\)")
_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?")


def code_of(exc: BaseException) -> int | None:
    """The MySQL error number of a driver exception, if it has one."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if isinstance(exc, errors.MySQLError) and args and isinstance(args[0], int):
        return int(args[0])
    return None


def message_of(exc: BaseException) -> str:
    """The error's first line without host names, addresses or user@host pairs."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 else str(exc) or type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = _QUOTED_HOST.sub("the exporter's user", first)
    first = _HOST_PORT.sub("", first)
    return _ADDRESS.sub("<address>", first)[:200]


_CLIENT_TEXT = {
    2002: "cannot connect through the socket",
    2003: "cannot connect to the server",
    2006: "the server has gone away",
    2013: "lost the connection to the server",
    2026: "TLS connection error",
}
_CAUSES = (
    ("refused", "connection refused"),
    ("timed out", "timed out"),
    ("name or service not known", "the host name did not resolve"),
    ("nodename nor servname", "the host name did not resolve"),
    ("no route", "no route to host"),
    ("unreachable", "network unreachable"),
    ("reset by peer", "connection reset"),
    ("no such file", "no such socket"),
    ("certificate", "certificate verification failed"),
)


def client_message(code: int, exc: BaseException) -> str:
    """Our own words for the client library's errors, whose texts quote host and port."""
    text = str(exc).lower()
    cause = next((words for key, words in _CAUSES if key in text), "")
    base = _CLIENT_TEXT.get(code, "client error")
    return f"{base} ({code})" + (f": {cause}" if cause else "")


def connection_lost(exc: BaseException) -> bool:
    """True when the connection is gone (or never came): every collector would fail too."""
    if isinstance(exc, PollError):
        return exc.reason in (Reason.CONNECT, Reason.TIMEOUT, Reason.AUTH)
    if isinstance(exc, OSError | TimeoutError | EOFError | errors.InterfaceError):
        return True
    code = code_of(exc)
    return code is not None and (code in CLIENT_ERRORS or code in CONNECT_CODES)


def classify(exc: BaseException) -> PollError:
    """Map driver errors to the contract's reasons, with a message free of addresses."""
    if isinstance(exc, PollError):
        return exc
    code = code_of(exc)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        return PollError(Reason.CONNECT, f"TLS handshake failed: {detail or 'error'}")
    if isinstance(exc, TimeoutError):
        return PollError(Reason.TIMEOUT, "timed out waiting for the server")
    if code in AUTH_CODES:
        return PollError(Reason.AUTH, f"authentication failed ({code}): {message_of(exc)}")
    if code in PERMISSION_CODES:
        return PollError(Reason.PERMISSION, f"missing privilege ({code}): {message_of(exc)}")
    if code in TIMEOUT_CODES:
        return PollError(Reason.TIMEOUT, f"server-side timeout ({code}): {message_of(exc)}")
    if code is not None and code in CLIENT_ERRORS:
        return PollError(Reason.CONNECT, client_message(code, exc))
    if code is not None and code in CONNECT_CODES:
        return PollError(Reason.CONNECT, f"connection failed ({code}): {message_of(exc)}")
    if isinstance(exc, OSError | EOFError | errors.InterfaceError):
        name = type(exc).__name__
        return PollError(Reason.CONNECT, f"connection failed: {name}: {message_of(exc)}")
    if code is not None:
        return PollError(Reason.PROTOCOL, f"server error ({code}): {message_of(exc)}")
    return PollError(Reason.OTHER, f"{type(exc).__name__}: {message_of(exc)}")
