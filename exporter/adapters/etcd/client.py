"""A small client for etcd's v3 JSON gateway (grpc-gateway) over aiohttp.

etcd serves every v3 RPC as ``POST /v3/<service>/<method>`` with a JSON body on its
client URL; keys and values are base64, 64-bit integers are strings. Using it keeps the
exporter free of a gRPC stack (and of etcd's protobufs) for the handful of calls it
makes.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp

from ...adapter import PollError, Reason
from .config import EtcdConfig

# etcd's gRPC status codes for authentication problems (grpc-gateway passes them on).
_AUTH_MESSAGES = (
    "authentication failed",
    "invalid auth token",
    "user name is empty",
    "user name not found",
    "invalid user ID or password",
)
_PERMISSION_MESSAGES = ("permission denied",)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class GatewayError(Exception):
    """An error reply of the gateway: the server answered, and said no."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def reason(self) -> Reason:
        lower = self.message.lower()
        if any(m in lower for m in _AUTH_MESSAGES) or self.code == 16:
            return Reason.AUTH
        if any(m in lower for m in _PERMISSION_MESSAGES) or self.code == 7:
            return Reason.PERMISSION
        return Reason.PROTOCOL


class Unreachable(Exception):
    """No configured endpoint answered (connection refused, reset, TLS failure)."""


def ssl_context(config: EtcdConfig) -> ssl.SSLContext | None:
    """The TLS context for https endpoints, or None for plain http."""
    if not config.urls_with_tls():
        return None
    ctx = ssl.create_default_context(cafile=config.ca_file)
    if config.cert_file and config.key_file:
        ctx.load_cert_chain(config.cert_file, config.key_file)
    if config.tls_insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Gateway:
    """Calls to the members of one cluster, with the auth token they share."""

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self.session: aiohttp.ClientSession | None = None
        self.tokens: dict[str, str] = {}  # endpoint -> auth token (tokens are per member)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(ssl=ssl_context(self.config) or False, limit=8)
            # The poll deadline bounds every call; aiohttp's own 5-minute default must not.
            self.session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self.session

    async def _post(self, endpoint: str, path: str, body: dict[str, Any], token: str | None) -> Any:
        headers = {"Authorization": token} if token else {}
        async with self._session().post(endpoint + path, json=body, headers=headers) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                raise GatewayError(resp.status, 0, f"HTTP {resp.status}, not JSON") from None
            if resp.status != 200 or not isinstance(data, dict) or "error" in data:
                if not isinstance(data, dict):
                    raise GatewayError(resp.status, 0, f"HTTP {resp.status}")
                message = str(data.get("message") or data.get("error") or f"HTTP {resp.status}")
                raise GatewayError(resp.status, int(data.get("code") or 0), message[:200])
            return data

    async def _token(self, endpoint: str) -> str | None:
        if self.config.username is None or self.config.password is None:
            return None
        if endpoint not in self.tokens:
            reply = await self._post(
                endpoint,
                "/v3/auth/authenticate",
                {"name": self.config.username, "password": self.config.password.get_secret_value()},
                None,
            )
            self.tokens[endpoint] = str(reply.get("token", ""))
        return self.tokens[endpoint]

    async def call(self, endpoint: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One RPC on one member; an expired token is renewed once."""
        body = body or {}
        token = await self._token(endpoint)
        try:
            return await self._post(endpoint, path, body, token)
        except GatewayError as exc:
            if token and "invalid auth token" in exc.message.lower():
                self.tokens.pop(endpoint, None)
                return await self._post(endpoint, path, body, await self._token(endpoint))
            raise

    async def close(self) -> None:
        self.tokens.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectionError | OSError) and not isinstance(
        exc, TimeoutError
    )


def classify(exc: BaseException) -> PollError:
    """Map client errors to the contract's reasons, with messages naming no address."""
    if isinstance(exc, PollError):
        return exc
    if isinstance(exc, GatewayError):
        return PollError(exc.reason(), f"etcd refused: {exc.message}")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return PollError(Reason.TIMEOUT, "timed out waiting for etcd")
    if isinstance(exc, Unreachable):
        return PollError(Reason.CONNECT, str(exc))
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return PollError(Reason.CONNECT, "TLS handshake failed")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return PollError(Reason.CONNECT, "the server closed the connection")
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        detail = err.strerror.lower() if err.strerror and "(" not in err.strerror else "failed"
        return PollError(Reason.CONNECT, f"cannot connect: {detail}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return PollError(Reason.CONNECT, f"connection failed ({type(exc).__name__})")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return PollError(Reason.PROTOCOL, f"unexpected reply ({type(exc).__name__})")
    return PollError(Reason.OTHER, type(exc).__name__)
