"""PostgreSQL error classification and DSN option checks (used by postgres.py).

Reasons come from codes, not from words: a query error carries its SQLSTATE, and
the SQLSTATE class decides (``invalid value for parameter "statement_timeout"`` is
22023, a bad value, not a timeout, whatever the message says). Errors while
connecting carry no SQLSTATE (libpq reports them as text only), so the structure of
the failure decides instead: a name that did not resolve or a socket error is
``connect``; libpq's ``needs_password``/``used_password`` flags, or a server report
(libpq's ``SEVERITY:  message`` form, two spaces) during start-up, are ``auth``.
Connection-string values libpq would refuse (``sslmode=bogus``) are refused by
:func:`check_dsn_options` when the configuration loads, so they never reach a poll.
Only the server's
"try again later" start-up refusals (too many clients, starting up, shutting down,
in recovery), which share the start-up path with authentication, are told apart by
their English text (``connect``); with another ``lc_messages`` they read ``auth``.

The module's name starts with ``_``: adapter discovery skips it.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import psycopg

from ...adapter import PollError, Reason

_BY_SQLSTATE = {
    "57014": Reason.TIMEOUT,  # query_canceled (statement_timeout)
    "55P03": Reason.TIMEOUT,  # lock_not_available (lock_timeout)
    "25P03": Reason.TIMEOUT,  # idle_in_transaction_session_timeout
    "42501": Reason.PERMISSION,  # insufficient_privilege
    "53300": Reason.CONNECT,  # too_many_connections
    "57P01": Reason.CONNECT,  # admin_shutdown
    "57P02": Reason.CONNECT,  # crash_shutdown
    "57P03": Reason.CONNECT,  # cannot_connect_now
    "3D000": Reason.AUTH,  # invalid_catalog_name: the login names a missing database
}
_BY_CLASS = {
    "28": Reason.AUTH,  # invalid authorization specification, invalid password
    "08": Reason.CONNECT,  # connection exception
    "22": Reason.OTHER,  # data exception: a value we sent (a setting) is invalid
    "42": Reason.PROTOCOL,  # syntax or access rule: a query this server does not know
}
_SERVER_REPORT = re.compile(r"(?:^|failed: )[A-Z]+:  ")
_TRY_LATER = re.compile(
    r"too many clients|remaining connection slots|is starting up|is shutting down"
    r"|is in recovery mode|not yet accepting connections"
)
# What libpq and psycopg put in front of a message to name the server: the target's
# name identifies it in every label, log line and page, so this is dropped.
_ADDRESS_PREFIX = re.compile(
    r'connection to server (?:at "[^"]*"(?: \([^)]*\))?, port \d+|on socket "[^"]*") failed: '
)
_RESOLVE = re.compile(r"failed to resolve host '[^']*'")

# DSN options whose values libpq checks only when connecting: checked at load instead.
_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
}


def check_dsn_options(params: dict[str, Any]) -> None:
    """ValueError naming an option whose value libpq would refuse at every connect."""
    for option, allowed in _CHOICES.items():
        value = params.get(option)
        if value is not None and str(value) not in allowed:
            raise ValueError(f"{option} in the DSN must be one of: {', '.join(allowed)}")


def clean_message(exc: BaseException) -> str:
    """The first line of the error, without the server's address."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = _ADDRESS_PREFIX.sub("", first)
    return _RESOLVE.sub("failed to resolve the host name", first)


def _connect_reason(exc: psycopg.OperationalError) -> Reason:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, socket.gaierror | OSError):
        return Reason.CONNECT
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is not None and (
        getattr(pgconn, "needs_password", False) or getattr(pgconn, "used_password", False)
    ):
        return Reason.AUTH
    raw = getattr(pgconn, "error_message", b"") if pgconn is not None else str(exc)
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    if _SERVER_REPORT.search(message):
        return Reason.CONNECT if _TRY_LATER.search(message) else Reason.AUTH
    return Reason.CONNECT


def classify(exc: BaseException) -> PollError:
    """Map driver errors to the contract's reasons, with a message free of addresses."""
    if isinstance(exc, PollError):
        return exc
    text = clean_message(exc)
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    if sqlstate:
        reason = _BY_SQLSTATE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2]) or Reason.PROTOCOL
    elif isinstance(exc, psycopg.OperationalError):
        reason = _connect_reason(exc)
    elif isinstance(exc, TimeoutError):
        reason = Reason.TIMEOUT
    elif isinstance(exc, OSError):
        reason = Reason.CONNECT
    elif isinstance(exc, psycopg.DatabaseError):
        reason = Reason.PROTOCOL
    else:
        reason = Reason.OTHER
    return PollError(reason, text)
