"""RpcTransport: POST with exactly the bytes given, and every failure mapped at the edge."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from scanner.client.transport import Timeouts
from scanner.errors import ConfigError, DecodeError, NetworkError, RequestTimeout, UsageError
from scanner.org.http import RpcTransport
from tests.loopback import RawRequest, serve_app, serve_raw


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"method": request.method, "raw_path": request.raw_path, "ua": request.headers.get("User-Agent")},
        headers={
            "x-acs-retry-after": "250",
            "x-acs-request-id": "rid-1",
            "Date": "Sun, 06 Dec 2026 02:00:00 GMT",
        },
    )


@pytest.mark.asyncio
async def test_post_sends_the_url_byte_for_byte_and_reads_the_answer() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serve_app(app) as base_url, RpcTransport() as http:
        answer = await http.post(f"{base_url}/?A=a%2Ab%20c&B=%27", {"x-acs-action": "X"})
    assert answer.status == 200
    # Sent as given (not re-normalised), and no User-Agent of aiohttp's own.
    assert orjson.loads(answer.body) == {"method": "POST", "raw_path": "/?A=a%2Ab%20c&B=%27", "ua": None}
    assert (answer.retry_after_ms, answer.request_id, answer.date) == (
        250,
        "rid-1",
        "Sun, 06 Dec 2026 02:00:00 GMT",
    )
    assert answer.content_type.startswith("application/json")


@pytest.mark.asyncio
async def test_a_redirect_is_not_followed() -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere")

    app = web.Application()
    app.router.add_post("/", redirect)
    async with serve_app(app) as base_url, RpcTransport() as http:
        answer = await http.post(f"{base_url}/", {})
    assert answer.status == 302


@pytest.mark.asyncio
async def test_a_body_over_the_cap_is_refused_while_streaming() -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 16384)
        return response

    app = web.Application()
    app.router.add_post("/", big)
    async with serve_app(app) as base_url, RpcTransport(max_response_bytes=100_000) as http:
        with pytest.raises(DecodeError) as caught:
            await http.post(f"{base_url}/", {})
    assert caught.value.code == "ResponseTooLarge"


@pytest.mark.asyncio
async def test_a_server_that_never_answers_is_a_timeout() -> None:
    async def silent(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async with serve_raw(silent) as server, RpcTransport(timeouts=Timeouts(read=0.2, total=5)) as http:
        with pytest.raises(RequestTimeout, match=r"sent nothing for 0\.2s"):
            await http.post(f"{server.base_url}/", {})


@pytest.mark.asyncio
async def test_a_connection_closed_mid_answer_is_a_network_error() -> None:
    async def half(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":')
        await writer.drain()
        writer.close()

    async with serve_raw(half) as server, RpcTransport() as http:
        with pytest.raises(NetworkError):
            await http.post(f"{server.base_url}/", {})


@pytest.mark.asyncio
async def test_lifecycle() -> None:
    http = RpcTransport()
    with pytest.raises(UsageError, match="not open"):
        await http.post("http://127.0.0.1:1/", {})
    async with http:
        with pytest.raises(UsageError, match="more than once"):
            await http.__aenter__()
    with pytest.raises(UsageError, match="has been closed"):
        await http.post("http://127.0.0.1:1/", {})
    with pytest.raises(UsageError, match="reopen"):
        await http.__aenter__()


@pytest.mark.parametrize("kwargs", [{"max_connections": 0}, {"max_response_bytes": True}])
def test_bad_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RpcTransport(**kwargs)  # type: ignore[arg-type]
