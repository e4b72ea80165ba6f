"""The default transport: one aiohttp session, its pool and timeouts, where aiohttp errors stop.

``AiohttpTransport`` implements ``scanner.client.http.AsyncTransport``. This is the only module
that imports aiohttp's client. Every failure that is not an HTTP response leaves
here as ``RequestTimeout``, ``NetworkError`` or ``ResponseTooLargeError``; no aiohttp or asyncio
exception escapes, and cancellation is never caught. HTTP error statuses are *not* errors at this
level: the caller gets the status and body and decides.

A body is never read without a bound: ``ConnectionLimits.max_response_bytes`` caps it *after*
decompression, checked against ``Content-Length`` before anything is read and then chunk by chunk
while it streams in, so a gzip bomb costs at most the cap.

The proxy the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``: see
``scanner.client.proxy``) is read when the transport is created and resolved per endpoint. The
session keeps ``trust_env=False`` on purpose: aiohttp's ``trust_env`` would also read ``~/.netrc``
and replace our signed ``Authorization`` with a Basic one for a host listed there.
"""

from __future__ import annotations

import functools
import logging
import platform
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aiohttp
import anyio
import anyio.lowlevel
from yarl import URL

from scanner.client.http import Request, Response
from scanner.client.proxy import Proxy, ProxyResolver
from scanner.errors import DecodeError, NetworkError, RequestTimeout, ResponseTooLargeError
from scanner.lifecycle import Lifecycle
from scanner.validation import require_positive

__all__ = [
    "DEFAULT_CONNECTION_LIMITS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUTS",
    "AiohttpTransport",
    "ConnectionLimits",
    "Timeouts",
    "default_user_agent",
]

logger = logging.getLogger("scanner.client.transport")

#: How long an idle pooled connection is kept open for reuse.
KEEPALIVE_SECONDS: Final = 30.0
#: The connection pool of a transport used on its own (a Scanner sizes it by its Concurrency).
DEFAULT_POOL_TOTAL: Final = 100
DEFAULT_POOL_PER_HOST: Final = 32
#: The largest response body read, decompressed: 32 MiB, a few hundred times the largest real page.
DEFAULT_MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds: to open a connection, between two reads of the response, and for the whole call."""

    connect: float = 5.0
    read: float = 10.0
    total: float = 30.0

    def __post_init__(self) -> None:
        require_positive("Timeouts.connect", self.connect)
        require_positive("Timeouts.read", self.read)
        require_positive("Timeouts.total", self.total)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """Open connections at most, in total and per (host, port, tls); and the largest response body.

    ``total`` and ``per_host`` left unset (None) are sized by whoever owns the pool: a ``Scanner``
    matches its ``Concurrency`` (``total`` and ``per_region``), a bare transport uses 100 and 32.
    So ``ConnectionLimits(max_response_bytes=...)`` changes only the cap.

    ``max_response_bytes`` is measured after decompression; an answer over it fails with
    ``ResponseTooLargeError`` (not retried).
    """

    total: int | None = None
    per_host: int | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        for name, value in (
            ("total", self.total),
            ("per_host", self.per_host),
            ("max_response_bytes", self.max_response_bytes),
        ):
            if value is not None or name == "max_response_bytes":
                require_positive(f"ConnectionLimits.{name}", value, integer=True)

    def sized(self, *, total: int, per_host: int) -> ConnectionLimits:
        """These limits with the pool sizes that are unset filled in."""
        if self.total is not None and self.per_host is not None:
            return self
        return ConnectionLimits(
            total=self.total if self.total is not None else total,
            per_host=self.per_host if self.per_host is not None else per_host,
            max_response_bytes=self.max_response_bytes,
        )


DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_CONNECTION_LIMITS: Final = ConnectionLimits(total=DEFAULT_POOL_TOTAL, per_host=DEFAULT_POOL_PER_HOST)


@functools.cache
def default_user_agent() -> str:
    """``eas-fleet-scanner/<version> Python/<version> aiohttp/<version>``.

    Computed once per process: reading the installed version parses the package's metadata file
    (~5 ms), which every ``EasClient`` would otherwise pay again.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("eas-fleet-scanner")
    except PackageNotFoundError:  # a source tree that was never installed
        ours = "0.0.0+unknown"
    return f"eas-fleet-scanner/{ours} Python/{platform.python_version()} aiohttp/{aiohttp.__version__}"


class AiohttpTransport:
    """Requests over one pooled, keep-alive ``aiohttp.ClientSession``.

    Use as ``async with AiohttpTransport(...) as transport``; the session is created on entry and
    closed on exit, and a transport cannot be reopened.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        limits: ConnectionLimits | None = None,
        proxies: ProxyResolver | None = None,
    ) -> None:
        """``proxies`` defaults to the environment's (read now: a bad value is a ``ConfigError``)."""
        self.timeouts = timeouts or DEFAULT_TIMEOUTS
        self.limits = (limits or DEFAULT_CONNECTION_LIMITS).sized(
            total=DEFAULT_POOL_TOTAL, per_host=DEFAULT_POOL_PER_HOST
        )
        self.proxies = proxies if proxies is not None else ProxyResolver.from_environment()
        self._proxied = bool(self.proxies)  # without a proxy, send() pays one attribute read
        self._session: aiohttp.ClientSession | None = None
        self._lifecycle = Lifecycle("transport")

    async def __aenter__(self) -> Self:
        self._lifecycle.check_openable()
        connector = aiohttp.TCPConnector(
            limit=self.limits.total or DEFAULT_POOL_TOTAL,  # never None once sized
            limit_per_host=self.limits.per_host or DEFAULT_POOL_PER_HOST,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.timeouts.total,
                sock_connect=self.timeouts.connect,
                sock_read=self.timeouts.read,
            ),
            # Headers are exactly what was signed; aiohttp adds only the unsigned framing ones.
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._lifecycle.opened()
        if self._proxied:
            logger.debug("requests go through %r", self.proxies)  # never the credentials
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session and its connections. Idempotent."""
        session, self._session = self._session, None
        self._lifecycle.closed()
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()
                # aiohttp's "graceful shutdown": let the transports finish closing.
                await anyio.lowlevel.checkpoint()

    @property
    def is_open(self) -> bool:
        return self._lifecycle.is_open

    async def send(self, request: Request) -> Response:
        """Send ``request`` (its URL sent byte for byte) and read the whole body, up to the cap.

        Raises ``RequestTimeout``, ``NetworkError`` or ``ResponseTooLargeError`` (without
        region/action; the caller adds them). Redirects are not followed: they would resend
        signed headers elsewhere.
        """
        session = self._session
        if session is None:
            self._lifecycle.require_open("use `async with AiohttpTransport() as transport`")
            raise AssertionError("an open transport has a session")
        url = URL(request.url, encoded=True)
        headers = request.headers
        proxy = self.proxies(url) if self._proxied else None
        proxy_headers = None
        if proxy is not None and proxy.authorization is not None:
            # A CONNECT carries it (https://); a forwarded request carries it itself (http://):
            # a hop-by-hop header the proxy removes, never signed.
            if url.scheme == "https":
                proxy_headers = {"Proxy-Authorization": proxy.authorization}
            else:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                allow_redirects=False,
                proxy=None if proxy is None else proxy.url,
                proxy_headers=proxy_headers,
            ) as resp:
                if proxy is not None and resp.status == 407:
                    # Only a proxy answers 407 (an http:// URL is forwarded, not tunnelled).
                    resp.close()
                    raise NetworkError(_proxy_refused(proxy, 407, resp.reason or "", url))
                body = await _read_body(resp, self.limits.max_response_bytes)
                return Response(resp.status, resp.headers, body)
        except TimeoutError as exc:
            # aiohttp's per-socket timeouts raise ServerTimeoutError, a TimeoutError subclass;
            # its *total* timeout raises the bare builtin, which is not an aiohttp.ClientError.
            raise RequestTimeout(_describe_timeout(exc, self.timeouts) + _via(proxy)) from exc
        except aiohttp.ClientPayloadError as exc:
            text = _flat(exc)
            if "content-encoding" in text.lower():
                # A proxy that labels a plain body gzip, or a broken compressed stream.
                raise DecodeError(f"the body is not what its Content-Encoding says: {text}") from exc
            raise NetworkError(
                f"the connection closed before the whole response arrived: {text}{_via(proxy)}"
            ) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise NetworkError(f"the server closed the connection: {_flat(exc)}{_via(proxy)}") from exc
        except aiohttp.ClientProxyConnectionError as exc:
            assert proxy is not None, "aiohttp connects to a proxy only when given one"
            raise NetworkError(
                f"cannot connect to the proxy {proxy}: {exc.os_error}; check that {proxy.variable} "
                "names a proxy that is running and reachable from here, or name the endpoint's host "
                "in NO_PROXY to reach it directly"
            ) from exc
        except aiohttp.ClientHttpProxyError as exc:
            # Not chained: its request_info holds the CONNECT's headers (Proxy-Authorization).
            assert proxy is not None, "only a proxy answers a CONNECT"
            raise NetworkError(_proxy_refused(proxy, exc.status, _flat(exc.message), url)) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise NetworkError(
                f"cannot connect to {exc.host}:{exc.port}: its TLS certificate is not trusted "
                f"({_flat(exc.certificate_error)}); if a proxy or gateway in between presents its own "
                "certificate, point SSL_CERT_FILE at a CA bundle that includes its CA"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            where = f"{exc.host}:{exc.port}"
            raise NetworkError(f"cannot connect to {where}: {exc.os_error}{_via(proxy)}") from exc
        except aiohttp.ClientResponseError as exc:
            # Not chained: its request_info holds the signed headers (the STS token among them).
            text = _flat(exc.message)
            if "content-encoding" in text.lower():
                # An encoding the request did not accept (Brotli, zstd): the server answered, so
                # not aiohttp's own "400" (its parser's status), and no network failure either.
                raise DecodeError(
                    f"the body's Content-Encoding cannot be decoded here ({text}); the server used it "
                    "although the request's Accept-Encoding did not name it"
                ) from None
            raise NetworkError(f"{type(exc).__name__}: {exc.status}, {text}{_via(proxy)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NetworkError(f"{type(exc).__name__}: {_flat(exc)}{_via(proxy)}") from exc

    def __repr__(self) -> str:
        state = self._lifecycle.state.value
        return (
            f"AiohttpTransport(state={state}, timeouts={self.timeouts!r}, limits={self.limits!r}, "
            f"proxies={self.proxies!r})"
        )


def _via(proxy: Proxy | None) -> str:
    """Where a failure happened, when the request went through a proxy (never its credentials)."""
    return "" if proxy is None else f" (through the proxy {proxy})"


def _proxy_refused(proxy: Proxy, status: int, reason: str, url: URL) -> str:
    """The message of a proxy's refusal: a 407 asks for credentials, anything else refuses the tunnel."""
    answer = f"HTTP {status} {reason}".rstrip()
    if status == 407:
        if proxy.authorization is None:
            fix = f"put them in the variable: {proxy.variable}=http://USER:PASSWORD@HOST:PORT"
        else:
            fix = f"check the USER:PASSWORD in {proxy.variable} (special characters %-encoded)"
        return f"the proxy {proxy} requires credentials it did not accept ({answer}); {fix}"
    return (
        f"the proxy {proxy} refused to reach {url.host}:{url.port} ({answer}); check that it allows "
        "this host and port, or name the host in NO_PROXY to reach it directly"
    )


def _flat(error: BaseException | str) -> str:
    """An error's text on one line: aiohttp's own messages may span several."""
    return " ".join(str(error).split())


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, decompressed, or ``ResponseTooLargeError`` as soon as it passes ``limit``."""
    length = resp.content_length
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if length is not None and length > limit:
        resp.close()
        raise ResponseTooLargeError(_too_large(limit, f"Content-Length: {length:,} bytes"))
    if length is not None and encoding == "identity":
        # aiohttp reads exactly Content-Length bytes, which is within the cap: one read.
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            resp.close()  # drop the connection: the rest of the body is never read
            raise ResponseTooLargeError(_too_large(limit, "more arrived, decompressed"))
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int, why: str) -> str:
    cap = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,}-byte"
    return (
        f"the response is larger than the {cap} cap ({why}); if the answer is "
        "legitimate, raise ConnectionLimits(max_response_bytes=...) (eas-scan: --max-response-mib)"
    )


def _describe_timeout(exc: BaseException, timeouts: Timeouts) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connecting took longer than {timeouts.connect:g}s"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"the server sent nothing for {timeouts.read:g}s"
    return f"the request took longer than {timeouts.total:g}s"
