"""``RpcTransport``: POST over one pooled aiohttp session, for the RPC APIs (STS, ResourceManager).

``scanner.client.transport.Transport`` sends GETs only; this is its POST twin, with the same
edge rules: every failure that is not an HTTP answer leaves as ``RequestTimeout`` or
``NetworkError``, cancellation is never caught, redirects are not followed (they would resend
signed headers elsewhere), and the body is capped while it streams in (an STS or
ResourceManager answer is a few KiB). When ``Transport`` grows a ``post``, this module goes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import TracebackType
from typing import Final, Self

import aiohttp
import anyio
import anyio.lowlevel
from yarl import URL

from scanner.client.transport import DEFAULT_TIMEOUTS, KEEPALIVE_SECONDS, Timeouts
from scanner.errors import ConfigError, DecodeError, NetworkError, RequestTimeout, UsageError
from scanner.org.rpc import RpcResponse

__all__ = ["DEFAULT_MAX_RPC_RESPONSE_BYTES", "RpcTransport"]

#: The largest RPC answer read: a ListAccounts page of 100 accounts with tags is ~60 KiB.
DEFAULT_MAX_RPC_RESPONSE_BYTES: Final = 4 * 1024 * 1024


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def _retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        millis = int(value.strip())
    except ValueError:
        return None
    return millis if millis > 0 else None


class RpcTransport:
    """``async with RpcTransport() as http: await http.post(url, headers)``."""

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        max_connections: int = 16,
        max_response_bytes: int = DEFAULT_MAX_RPC_RESPONSE_BYTES,
    ) -> None:
        for name, value in (("max_connections", max_connections), ("max_response_bytes", max_response_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RpcTransport {name} must be a positive integer, got {value!r}")
        self.timeouts = timeouts or DEFAULT_TIMEOUTS
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._state = _State.UNOPENED

    async def __aenter__(self) -> Self:
        if self._state is _State.OPENED:
            raise UsageError("Cannot open a transport more than once.")
        if self._state is _State.CLOSED:
            raise UsageError("Cannot reopen a transport once it has been closed.")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(
                total=self.timeouts.total, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
            ),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        self._state = _State.CLOSED
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()
                await anyio.lowlevel.checkpoint()

    async def post(self, url: str, headers: Mapping[str, str]) -> RpcResponse:
        session = self._session
        if session is None:
            if self._state is _State.CLOSED:
                raise UsageError("The transport has been closed.")
            raise UsageError("The transport is not open: use `async with RpcTransport() as http`.")
        try:
            async with session.post(URL(url, encoded=True), headers=headers, allow_redirects=False) as resp:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise DecodeError(
                            f"the response is larger than {self.max_response_bytes} bytes",
                            status=resp.status,
                            code="ResponseTooLarge",
                        )
                return RpcResponse(
                    status=resp.status,
                    body=bytes(body),
                    content_type=resp.headers.get("Content-Type", ""),
                    retry_after_ms=_retry_after(resp.headers.get("x-acs-retry-after")),
                    request_id=resp.headers.get("x-acs-request-id"),
                    date=resp.headers.get("Date"),
                )
        except TimeoutError as exc:
            raise RequestTimeout(_describe_timeout(exc, self.timeouts)) from exc
        except aiohttp.ClientPayloadError as exc:
            raise NetworkError(f"the connection closed before the whole response arrived: {exc}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise NetworkError(f"the server closed the connection: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise NetworkError(f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NetworkError(f"{type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"RpcTransport(state={self._state.value}, timeouts={self.timeouts!r})"


def _describe_timeout(exc: BaseException, timeouts: Timeouts) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connecting took longer than {timeouts.connect:g}s"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"the server sent nothing for {timeouts.read:g}s"
    return f"the request took longer than {timeouts.total:g}s"
