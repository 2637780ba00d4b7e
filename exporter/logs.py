"""One-line logs (logfmt or JSON) that never carry a secret.

Adapters write messages without credentials in the first place; the redacting
formatter is the safety net: every configured secret value standing as a token (see
``_BEFORE``/``_AFTER``) is replaced in the final line, whatever path it took to get
there (an exception text from a driver, say).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

_SECRETS: frozenset[str] = frozenset()
_PATTERN: re.Pattern[str] | None = None
REDACTED = "<redacted>"
MIN_SECRET = 3

# Where a secret counts as standing alone. A secret that is a common word (the
# compose file's access key "sparki") must not eat identifiers that merely contain
# it: "sparki.service", "sparki-exporter", "sparki_pw", "mysparki" are left alone.
# So an occurrence is replaced unless it is glued to a longer identifier: preceded by
# a letter, digit or "_", or by "." or "-" that follows one; followed by a letter,
# digit or "_", or by "." or "-" before one. Everything else is a boundary: spaces,
# quotes, "=", ":", "@", "/", "," and the ends of the text (so "password=hunter2",
# "user:hunter2@host", '"hunter2"' and "hunter2." at the end of a sentence are all
# redacted).
_BEFORE = r"(?<![A-Za-z0-9_])(?<![A-Za-z0-9_][.-])"
_AFTER = r"(?![A-Za-z0-9_])(?![.-][A-Za-z0-9_])"


def _variants(secret: str) -> set[str]:
    """The secret as written, and as the JSON and logfmt encoders escape it."""
    json_form = json.dumps(secret)[1:-1]
    logfmt_form = secret.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return {secret, json_form, logfmt_form}


def register_secrets(secrets: Iterable[str]) -> None:
    """Set the secret values scrubbed from every log line and error text.

    The list is replaced, not extended: after a reload, a secret that is no longer
    configured is no longer special (and the list cannot grow without bound).
    Secrets shorter than three characters are not redacted (they would match
    everywhere).
    """
    global _SECRETS, _PATTERN
    values = frozenset(s for s in secrets if s and len(s) >= MIN_SECRET)
    if values == _SECRETS:
        return
    forms = {form for s in values for form in _variants(s)}
    # Longest first, so a secret containing another is replaced whole.
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    _PATTERN = re.compile(f"{_BEFORE}(?:{alternatives}){_AFTER}") if forms else None
    _SECRETS = values


def redact(text: str) -> str:
    """Replace every known secret standing as a token in ``text``."""
    if _PATTERN is None:
        return text
    return _PATTERN.sub(REDACTED, text)


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
