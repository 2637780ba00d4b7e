"""The memcached text protocol, on asyncio streams: just what the exporter sends.

Why not a client library: the exporter needs ``stats``, ``stats slabs``, ``stats
settings``, one ``set``/``get``/``delete`` and ASCII authentication, on one connection
per node that it owns, times and drops itself. The maintained asyncio clients
(aiomcache, emcache) pool connections behind the caller's back, cover no ``stats``
sub-commands uniformly, and neither speaks ASCII auth; the protocol for these six
commands is a few lines (docs/memcached.md has the reasoning). Nothing here blocks the
event loop: every read is an awaited stream read bounded by the caller's deadline.

Errors come in three kinds, because the caller treats them differently:

* :class:`ServerReplyError`: the server answered ``ERROR``, ``CLIENT_ERROR`` or
  ``SERVER_ERROR``; the connection is still in step, so only that step failed.
* :class:`AuthFailed`: the server refused the credentials or requires them.
* :class:`ProtocolError`: a reply we do not understand (a proxy, a different server):
  the stream can no longer be trusted, the connection must go.

Socket errors (OSError, asyncio.IncompleteReadError) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib

# Bounds on what a reply may hold, so a hostile or broken peer cannot make us buffer
# without limit: ``stats`` has ~100 lines, ``stats slabs`` at most ~64 classes x 15.
MAX_LINE = 4096
MAX_LINES = 5000
MAX_VALUE = 1024


class ProtocolError(Exception):
    """A reply that is not the memcached text protocol: drop the connection."""


class ServerReplyError(Exception):
    """The server answered ERROR, CLIENT_ERROR or SERVER_ERROR; the stream is in step."""


class AuthFailed(Exception):
    """The server requires credentials or refused the ones given."""


def valid_key(key: str) -> bool:
    """A memcached key: 1..250 bytes, no whitespace or control characters."""
    data = key.encode()
    return 0 < len(data) <= 250 and all(32 < b < 127 for b in data)


class Connection:
    """One open text-protocol connection to one memcached server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, connect_seconds: float) -> Connection:
        """Connect within ``connect_seconds``."""
        async with asyncio.timeout(connect_seconds):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE * 4)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _line(self) -> str:
        try:
            raw = await self.reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError("a reply line is longer than any memcached sends") from None
        if len(raw) > MAX_LINE:
            raise ProtocolError("a reply line is longer than any memcached sends")
        return raw[:-2].decode("ascii", errors="replace")

    @staticmethod
    def _check_error(line: str) -> None:
        if line == "ERROR" or line.startswith(("CLIENT_ERROR", "SERVER_ERROR")):
            text = line[:120]
            if "unauthenticated" in line or "authentication failure" in line:
                raise AuthFailed(text)
            raise ServerReplyError(text)

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def authenticate(self, username: str, password: str) -> None:
        """ASCII authentication (memcached -Y): a ``set`` whose value is "user pass"."""
        token = f"{username} {password}".encode()
        await self._send(b"set sparki-auth 0 0 %d\r\n%s\r\n" % (len(token), token))
        line = await self._line()
        if line == "STORED":
            return
        if line.startswith("CLIENT_ERROR") or line == "ERROR":
            # Never quote the reply's echo of our input: it could hold the password.
            raise AuthFailed("the server refused the username and password")
        raise ProtocolError("unexpected reply to the authentication")

    async def stats(self, group: str = "") -> dict[str, str]:
        """``stats`` (or ``stats <group>``) as a dict of STAT names to values."""
        await self._send((f"stats {group}" if group else "stats").encode() + b"\r\n")
        out: dict[str, str] = {}
        for _ in range(MAX_LINES):
            line = await self._line()
            if line == "END":
                return out
            self._check_error(line)
            kind, _, rest = line.partition(" ")
            name, _, value = rest.partition(" ")
            if kind != "STAT" or not name:
                raise ProtocolError("unexpected line in a stats reply")
            out[name] = value
        raise ProtocolError("a stats reply without END")

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self._send(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode(), ttl, len(value), value))
        line = await self._line()
        self._check_error(line)
        if line != "STORED":
            raise ServerReplyError(f"set answered {line[:40]!r}")

    async def get(self, key: str) -> bytes | None:
        await self._send(b"get %s\r\n" % key.encode())
        line = await self._line()
        self._check_error(line)
        if line == "END":
            return None
        parts = line.split(" ")
        if len(parts) < 4 or parts[0] != "VALUE" or parts[1] != key or not parts[3].isdigit():
            raise ProtocolError("unexpected reply to get")
        size = int(parts[3])
        if size > MAX_VALUE:
            raise ProtocolError("get returned a value larger than the canary's")
        data = await self.reader.readexactly(size + 2)
        if await self._line() != "END" or not data.endswith(b"\r\n"):
            raise ProtocolError("unexpected end of a get reply")
        return data[:-2]

    async def delete(self, key: str) -> bool:
        """True when the key was there; False when it was not (expired already, say)."""
        await self._send(b"delete %s\r\n" % key.encode())
        line = await self._line()
        self._check_error(line)
        if line == "DELETED":
            return True
        if line == "NOT_FOUND":
            return False
        raise ProtocolError("unexpected reply to delete")
