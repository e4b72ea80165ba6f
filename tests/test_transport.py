"""The transport: configuration, lifecycle, and every aiohttp/asyncio failure mapped at the edge."""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
import pytest_asyncio
from aiohttp import web
from aioresponses import aioresponses

from scanner.client.http import Request, Response
from scanner.client.transport import (
    DEFAULT_CONNECTION_LIMITS,
    AiohttpTransport,
    ConnectionLimits,
    Timeouts,
    default_user_agent,
)
from scanner.engine.retry import is_retryable
from scanner.errors import (
    ConfigError,
    NetworkError,
    RequestTimeout,
    ResponseTooLargeError,
    TransportError,
    UsageError,
)
from tests.loopback import RawHandler, RawRequest, serve_app, serve_raw

URL = "https://pai-eas.cn-shanghai.aliyuncs.com/api/v2/regions"


async def get(transport: AiohttpTransport, url: str, headers: dict[str, str]) -> Response:
    return await transport.send(Request("GET", url, headers))


@pytest.fixture
def mocked() -> aioresponses:
    with aioresponses() as mock:
        yield mock


@pytest_asyncio.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with AiohttpTransport() as opened:
        yield opened


# --- configuration ---------------------------------------------------------------------------


def test_defaults() -> None:
    assert Timeouts() == Timeouts(connect=5.0, read=10.0, total=30.0)
    assert DEFAULT_CONNECTION_LIMITS.total >= DEFAULT_CONNECTION_LIMITS.per_host >= 1  # type: ignore[operator]
    assert AiohttpTransport().limits == DEFAULT_CONNECTION_LIMITS
    # Pool sizes left unset take the transport's defaults; the cap is kept.
    assert AiohttpTransport(limits=ConnectionLimits(max_response_bytes=10)).limits == ConnectionLimits(
        total=DEFAULT_CONNECTION_LIMITS.total,
        per_host=DEFAULT_CONNECTION_LIMITS.per_host,
        max_response_bytes=10,
    )


@pytest.mark.parametrize("field", ["connect", "read", "total"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "5", True, None])
def test_timeouts_must_be_positive_numbers(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})  # type: ignore[arg-type]


def test_the_response_cap_defaults_to_32_mib() -> None:
    assert ConnectionLimits().max_response_bytes == 33_554_432


@pytest.mark.parametrize("field", ["total", "per_host", "max_response_bytes"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_connection_limits_must_be_positive_integers(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"ConnectionLimits.{field}"):
        ConnectionLimits(**{field: value})  # type: ignore[arg-type]


def test_user_agent_names_us_python_and_aiohttp() -> None:
    agent = default_user_agent()
    assert agent.startswith("eas-fleet-scanner/")
    assert " Python/3." in agent
    assert f" aiohttp/{aiohttp.__version__}" in agent


# --- lifecycle -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_session_before_open_and_none_after_close() -> None:
    transport = AiohttpTransport()
    assert transport._session is None  # created in __aenter__, never in __init__
    with pytest.raises(UsageError, match="not open"):
        await get(transport, URL, {})
    async with transport:
        assert transport.is_open
        with pytest.raises(UsageError, match="more than once"):
            await transport.__aenter__()
    assert not transport.is_open
    with pytest.raises(UsageError, match="closed"):
        await get(transport, URL, {})
    with pytest.raises(UsageError, match="reopen"):
        await transport.__aenter__()
    await transport.aclose()  # idempotent


# --- responses (adapter tier) ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_status_body_request_id_and_retry_after(
    transport: AiohttpTransport, mocked: aioresponses
) -> None:
    mocked.get(
        URL,
        status=429,
        body=b'{"Code":"Throttling"}',
        headers={"x-acs-retry-after": "1500", "x-acs-request-id": "REQ-1"},
    )
    response = await get(transport, URL, {"accept": "application/json"})
    assert (response.status, response.body) == (429, b'{"Code":"Throttling"}')
    assert (response.retry_after_ms, response.request_id) == (1500, "REQ-1")
    assert response.content_type == "application/json"
    assert response.headers["X-ACS-Request-Id"] == "REQ-1"  # names are case-insensitive


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("value", "expected"),
    [("1500", 1500), (" 20 ", 20), ("abc", None), ("-5", None), ("0", None), ("1.5", None)],
)
async def test_retry_after_is_kept_only_when_valid(
    transport: AiohttpTransport, mocked: aioresponses, value: str, expected: int | None
) -> None:
    mocked.get(URL, status=503, body=b"", headers={"x-acs-retry-after": value})
    assert (await get(transport, URL, {})).retry_after_ms == expected


@pytest.mark.asyncio
async def test_redirects_are_not_followed(transport: AiohttpTransport, mocked: aioresponses) -> None:
    mocked.get(URL, status=302, headers={"Location": "https://evil.example/steal"})
    response = await get(transport, URL, {})
    assert response.status == 302


def _connection_key() -> object:
    from aiohttp.client_reqrep import ConnectionKey

    return ConnectionKey("pai-eas.cn-shanghai.aliyuncs.com", 443, True, True, None, None, None)


FAILURES: list[tuple[str, BaseException, type[TransportError]]] = [
    ("asyncio.TimeoutError (total timeout)", TimeoutError(), RequestTimeout),
    ("builtin TimeoutError", TimeoutError(), RequestTimeout),
    ("ServerTimeoutError", aiohttp.ServerTimeoutError("read timed out"), RequestTimeout),
    ("ConnectionTimeoutError", aiohttp.ConnectionTimeoutError("connect timed out"), RequestTimeout),
    ("SocketTimeoutError", aiohttp.SocketTimeoutError("sock_read"), RequestTimeout),
    (
        "connection refused",
        aiohttp.ClientConnectorError(
            _connection_key(), ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        ),  # type: ignore[arg-type]
        NetworkError,
    ),
    ("connection reset", aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"), NetworkError),
    ("bare ConnectionResetError", ConnectionResetError(errno.ECONNRESET, "reset"), NetworkError),
    ("ServerDisconnectedError", aiohttp.ServerDisconnectedError(), NetworkError),
    ("ClientPayloadError", aiohttp.ClientPayloadError("Response payload is not completed"), NetworkError),
    ("other ClientError", aiohttp.ClientError("something odd"), NetworkError),
    ("ClientConnectionError", aiohttp.ClientConnectionError("Connection refused: GET"), NetworkError),
    ("OSError", OSError(errno.ENETUNREACH, "Network is unreachable"), NetworkError),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "failure", "expected"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_every_failure_becomes_one_of_ours(
    transport: AiohttpTransport,
    mocked: aioresponses,
    name: str,
    failure: BaseException,
    expected: type[TransportError],
) -> None:
    mocked.get(URL, exception=failure)
    with pytest.raises(TransportError) as caught:
        await get(transport, URL, {})
    assert type(caught.value) is expected
    assert caught.value.__cause__ is failure
    assert not isinstance(caught.value, aiohttp.ClientError | asyncio.TimeoutError)


@pytest.mark.asyncio
async def test_a_response_error_does_not_carry_the_signed_headers_along(
    transport: AiohttpTransport, mocked: aioresponses
) -> None:
    from aiohttp.client_reqrep import RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL as YarlURL

    signed = CIMultiDictProxy(CIMultiDict({"x-acs-security-token": "TOKEN-SECRET-123456"}))
    info = RequestInfo(YarlURL(URL), "GET", signed, YarlURL(URL))
    failure = aiohttp.ClientResponseError(info, (), status=400, message="Got more than 8190 bytes")
    mocked.get(URL, exception=failure)
    with pytest.raises(NetworkError, match=r"ClientResponseError: 400, Got more than 8190 bytes") as caught:
        await get(transport, URL, {})
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "TOKEN-SECRET" not in repr(caught.value)


@pytest.mark.asyncio
async def test_cancellation_is_never_swallowed(transport: AiohttpTransport, mocked: aioresponses) -> None:
    mocked.get(URL, exception=asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await get(transport, URL, {})


# --- real sockets on loopback ----------------------------------------------------------------


async def _ok(request: RawRequest, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
    await writer.drain()


@pytest.mark.asyncio
async def test_one_session_and_keep_alive_across_requests() -> None:
    async with serve_raw(_ok) as server, AiohttpTransport() as transport:
        session = transport._session
        for _ in range(5):
            response = await get(transport, f"{server.base_url}/api/v2/regions", {})
            assert response.status == 200
        assert transport._session is session
    assert len(server.requests) == 5
    assert len({r.peer_port for r in server.requests}) == 1


@pytest.mark.asyncio
async def test_the_url_goes_out_byte_for_byte() -> None:
    target = (
        "/api/v2/services/cn-shanghai/svc%20name%2Fx~y%2A%C3%A9%27/instances?Filter=a%2Bb%2A%27&IsSpot=true"
    )
    async with serve_raw(_ok) as server, AiohttpTransport() as transport:
        await get(transport, server.base_url + target, {"host": "example.test:1", "user-agent": "ua/1"})
    (request,) = server.requests
    assert request.target == target  # yarl did not turn %2A into * or %27 into '
    sent = {name.lower(): value for name, value in request.headers}
    assert sent["host"] == "example.test:1"
    assert sent["user-agent"] == "ua/1"


@pytest.mark.asyncio
async def test_connection_limit_per_host_is_honoured() -> None:
    in_flight = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/x", slow)
    limits = ConnectionLimits(total=10, per_host=2)
    async with (
        serve_app(app) as base_url,
        AiohttpTransport(limits=limits) as transport,
        anyio.create_task_group() as tg,
    ):
        for _ in range(8):
            tg.start_soon(get, transport, f"{base_url}/x", {})
    assert peak == 2


@pytest.mark.asyncio
async def test_a_server_slower_than_the_read_timeout_gives_request_timeout() -> None:
    async def never(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with (
        serve_raw(never) as server,
        AiohttpTransport(timeouts=Timeouts(read=0.1, total=5)) as transport,
    ):
        with pytest.raises(RequestTimeout, match=r"sent nothing for 0\.1s"):
            await get(transport, server.base_url + "/", {})


@pytest.mark.asyncio
async def test_the_total_timeout_gives_request_timeout() -> None:
    async def trickle(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    timeouts = Timeouts(read=1.0, total=0.2)
    async with serve_raw(trickle) as server, AiohttpTransport(timeouts=timeouts) as transport:
        with pytest.raises(RequestTimeout, match=r"longer than 0\.2s"):
            await get(transport, server.base_url + "/", {})


@pytest.mark.asyncio
async def test_a_connection_closed_mid_body_gives_network_error() -> None:
    async def hang_up(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"Instances": [')
        await writer.drain()
        writer.close()

    async with serve_raw(hang_up) as server, AiohttpTransport() as transport:
        with pytest.raises(NetworkError, match="before the whole response"):
            await get(transport, server.base_url + "/", {})


@pytest.mark.asyncio
async def test_a_connection_closed_before_any_answer_gives_network_error() -> None:
    async def hang_up(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serve_raw(hang_up) as server, AiohttpTransport() as transport:
        with pytest.raises(NetworkError, match="closed the connection"):
            await get(transport, server.base_url + "/", {})


@pytest.mark.asyncio
async def test_connection_refused_gives_network_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AiohttpTransport() as transport:
        with pytest.raises(NetworkError, match=f"cannot connect to 127.0.0.1:{port}"):
            await get(transport, f"http://127.0.0.1:{port}/", {})


@pytest.mark.asyncio
async def test_cancelling_a_request_in_flight_propagates_and_leaves_no_error() -> None:
    async def never(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with serve_raw(never) as server, AiohttpTransport() as transport:
        with anyio.move_on_after(0.05) as scope:
            await get(transport, server.base_url + "/", {})
        assert scope.cancelled_caught


# --- the response size cap (decompressed, while streaming) ---------------------------------------

MIB = 1024 * 1024


@functools.cache
def gzip_bomb(decompressed_mib: int) -> bytes:
    """A gzip body of ``decompressed_mib`` MiB of zeros, a few hundred KiB compressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(decompressed_mib)]
    return b"".join([*parts, compressor.flush()])


def _head(extra: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


async def _serve_bomb(request: RawRequest, writer: asyncio.StreamWriter) -> None:
    bomb = gzip_bomb(64)
    writer.write(_head(f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n") + bomb)
    await writer.drain()


async def _serve_endless_chunks(request: RawRequest, writer: asyncio.StreamWriter) -> None:
    """A plain body with no Content-Length, far bigger than any cap, sent until the client leaves."""
    writer.write(_head("Transfer-Encoding: chunked\r\n"))
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    for _ in range(4096):  # 256 MiB
        writer.write(chunk)
        await writer.drain()


async def _get_with_peak(transport: AiohttpTransport, url: str) -> tuple[BaseException, int]:
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError) as caught:
            await get(transport, url, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return caught.value, peak


@pytest.mark.asyncio
@pytest.mark.parametrize("serve", [_serve_bomb, _serve_endless_chunks], ids=["gzip bomb", "endless plain"])
async def test_a_body_over_the_cap_stops_at_the_cap_in_bounded_memory(serve: RawHandler) -> None:
    gzip_bomb(64)  # built before memory is measured
    limits = ConnectionLimits(max_response_bytes=4 * MIB)
    async with serve_raw(serve) as server, AiohttpTransport(limits=limits) as transport:
        error, peak = await _get_with_peak(transport, server.base_url + "/")
        assert peak < 12 * MIB  # the bodies are 64 and 256 MiB; what is held is the cap and a chunk or two
        assert str(error).startswith("the response is larger than the 4 MiB cap")
        assert "ConnectionLimits(max_response_bytes=...)" in str(error)
        assert "--max-response-mib" in str(error)
        assert error.kind == "ResponseTooLarge"
        assert isinstance(error, TransportError)
        assert not is_retryable(error)
        # The connection was dropped, not reused with the rest of the body unread.
        assert transport._session is not None
        assert transport._session.connector is not None
        await asyncio.sleep(0)
        assert sum(len(c) for c in transport._session.connector._conns.values()) == 0


@pytest.mark.asyncio
async def test_a_content_length_over_the_cap_fails_before_the_body_is_read() -> None:
    async def huge_promise(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(_head(f"Content-Length: {64 * MIB}\r\n") + b"[")
        await writer.drain()
        await asyncio.sleep(10)  # the rest never comes: only a check of the header can end this

    limits = ConnectionLimits(max_response_bytes=MIB)
    async with serve_raw(huge_promise) as server, AiohttpTransport(limits=limits) as transport:
        with anyio.fail_after(5):
            with pytest.raises(
                ResponseTooLargeError, match=r"1 MiB cap \(Content-Length: 67,108,864 bytes\)"
            ):
                await get(transport, server.base_url + "/", {})


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [MIB - 1, MIB])
async def test_a_body_at_or_under_the_cap_is_read_whole(size: int) -> None:
    body = b"x" * size
    bomb = zlib.compress(body, wbits=31)

    async def answer(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        if request.target == "/gzip":
            writer.write(_head(f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n") + bomb)
        elif request.target == "/chunked":
            writer.write(_head("Transfer-Encoding: chunked\r\n") + b"%x\r\n%s\r\n0\r\n\r\n" % (size, body))
        else:
            writer.write(_head(f"Content-Length: {size}\r\n") + body)
        await writer.drain()

    limits = ConnectionLimits(max_response_bytes=MIB)
    async with serve_raw(answer) as server, AiohttpTransport(limits=limits) as transport:
        for path in ("/plain", "/gzip", "/chunked"):
            response = await get(transport, server.base_url + path, {})
            assert response.body == body, path


@pytest.mark.asyncio
async def test_the_date_and_content_type_headers_are_kept(
    transport: AiohttpTransport, mocked: aioresponses
) -> None:
    date = "Sun, 06 Dec 2026 02:30:00 GMT"
    mocked.get(URL, status=404, body=b"<html/>", headers={"Date": date, "Content-Type": "text/html"})
    response = await get(transport, URL, {})
    assert (response.date, response.content_type) == (date, "text/html")
