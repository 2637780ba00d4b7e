"""Listen addresses as Prometheus exporters spell them; standard library only (the
``healthcheck`` subcommand parses one without loading the server)."""

from __future__ import annotations


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """Split ``HOST:PORT``, ``:PORT`` or ``[v6]:PORT`` as Prometheus exporters accept them."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address {address!r}: expected HOST:PORT, e.g. :9840")
    host = host.strip("[]")
    return (host or None), int(port)
