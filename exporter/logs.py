"""One-line logs (logfmt or JSON) that never carry a secret.

Adapters write messages without credentials in the first place; the redacting
formatter is the safety net: every configured secret value is replaced in the final
line, whatever path it took to get there (an exception text from a driver, say).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

_SECRETS: set[str] = set()
REDACTED = "<redacted>"


def register_secrets(secrets: Iterable[str]) -> None:
    """Remember secret values so they are scrubbed from every log line and error text."""
    _SECRETS.update(s for s in secrets if s and len(s) >= 3)


def redact(text: str) -> str:
    """Replace every known secret in ``text``; longest first so overlaps cannot leak."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}) or {})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
        if self.as_json:
            line = json.dumps(fields, default=str)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return redact(line)


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger: one line per event on stderr.

    ``warn`` is the Prometheus tools' spelling (``--log.level=warn``), ``warning``
    Python's; both mean the same level.
    """
    level = "warning" if level == "warn" else level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a line per scrape; keep it at warning.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def kv(**fields: Any) -> dict[str, Any]:
    """``extra=`` argument carrying structured fields: ``log.info("x", extra=kv(target=t))``."""
    return {"kv": fields}
