"""Error texts that name no address: the ``target`` label already says which server.

Drivers put the server's address in their messages (``connection to server at
"10.0.0.5", port 5432 failed``, ``Could not connect to the endpoint URL:
"https://s3.eu-west-1.amazonaws.com/..."``, ``Cannot connect to host minio:9000``).
Shown on the landing page, in logs and in traces, that leaks the internal topology to
whoever can read them, and it makes one failure read differently per node. Adapters
write their own messages without addresses where they can; :func:`without_addresses`
is the core's net under every poll error before it is stored, logged or traced.
"""

from __future__ import annotations

import re

_RULES = [
    # URLs (an S3 endpoint, a MinIO metrics URL), whole.
    (re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+"""), "the endpoint"),
    # libpq: 'connection to server at "h" (ip), port 5432 failed: ' and the socket form.
    (
        re.compile(
            r'connection to server (?:at "[^"]*"(?: \([^)]*\))?, port \d+|on socket "[^"]*") '
            r"failed: "
        ),
        "",
    ),
    (re.compile(r"failed to resolve host '[^']*'"), "failed to resolve the host name"),
    # aiohttp: "Cannot connect to host minio:9000 ssl:default [Connection refused]"
    (re.compile(r"Cannot connect to host \S+ ssl:\S+"), "Cannot connect"),
    # What is left: [v6]:port, v4[:port], name.domain:port.
    (re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"), "the server"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"), "the server"),
    # (a name has a letter: "12:30:45" is a time, not an address)
    (
        re.compile(r"\b(?=[A-Za-z0-9.-]*[A-Za-z])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*:\d{1,5}\b"),
        "the server",
    ),
]


def without_addresses(text: str) -> str:
    """``text`` with URLs, IP addresses and host:port pairs replaced by a neutral word."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
