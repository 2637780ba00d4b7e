"""Parsing the replies every Redis collector reads: INFO text, ``k=v,...`` fields, maps.

Shared by the target and the collectors; imports no driver.
"""

from __future__ import annotations

import math
from typing import Any

from ...adapter import PollError, Reason


def parse_info(text: str) -> dict[str, str]:
    """INFO's ``key:value`` lines; section headers and blank lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_fields(value: str) -> dict[str, str]:
    """``calls=5,usec=20,...`` into a dict."""
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
    return out


def pairs(reply: Any, what: str = "LATENCY HISTOGRAM") -> list[tuple[Any, Any]]:
    """A RESP2 flat list or a RESP3 map, as (key, value) pairs."""
    if isinstance(reply, dict):
        return list(reply.items())
    if isinstance(reply, list | tuple):
        return list(zip(reply[0::2], reply[1::2], strict=False))
    raise PollError(Reason.PROTOCOL, f"unexpected reply shape from {what}")


def text(value: Any) -> str:
    """A reply value as text, whether the connection decodes replies or not."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def as_int(value: str | None) -> int:
    """An INFO number as an int; missing or malformed is 0 (INFO fields come and go)."""
    try:
        return int(float(value)) if value else 0
    except (ValueError, OverflowError):
        return 0


def as_float(value: str | None) -> float | None:
    """An INFO number as a float; None when missing or malformed."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
