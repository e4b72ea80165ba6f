"""The proxy the environment names (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), as Go's net/http reads it.

Loopback is never proxied, so the end-to-end tests name their loopback servers with names of the
reserved ``.test`` domain that only the test proxy knows (``NAMES``): a request that goes through
the proxy reaches the server, one that does not is refused by ``tests.netguard`` (the name does
not resolve here). Nothing leaves loopback either way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp.connector
import orjson
import pytest
from aiohttp import web
from yarl import URL

from scanner.client.credentials import StaticCredentials
from scanner.client.http import Request
from scanner.client.proxy import ProxyResolver, redact_proxy_value
from scanner.client.transport import AiohttpTransport
from scanner.errors import ConfigError, NetworkError
from scanner.scanner import Scanner
from scanner.simulator import Simulator
from tests.certs import self_signed
from tests.loopback import serve_app

USER, PASSWORD = "scanner", "pr0xy-s3cret-pass"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


# --- resolution rules ------------------------------------------------------------------------


def resolve(environ: dict[str, str], url: str) -> str | None:
    proxy = ProxyResolver.from_environment(environ)(URL(url))
    return None if proxy is None else proxy.address


def test_each_scheme_uses_its_variable_and_upper_case_wins() -> None:
    env = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:8080"}
    assert resolve(env, "https://pai-eas.cn-shanghai.aliyuncs.com/") == "http://secure:3128"
    assert resolve(env, "http://pai-eas.cn-shanghai.aliyuncs.com/") == "http://plain:8080"
    # Go's getEnvAny and the official SDK: HTTPS_PROXY first, https_proxy when it is unset or empty.
    both = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}
    assert resolve(both, "https://example.com/") == "http://upper:1"
    assert (
        resolve({"HTTPS_PROXY": "", "https_proxy": "http://lower:2"}, "https://example.com/")
        == "http://lower:2"
    )
    assert resolve({"https_proxy": "http://lower:2"}, "https://example.com/") == "http://lower:2"
    # No fallback from one scheme to the other, and no proxy at all without a variable.
    assert resolve({"HTTP_PROXY": "http://plain:8080"}, "https://example.com/") is None
    assert resolve({}, "https://example.com/") is None
    assert not ProxyResolver.from_environment({})


def test_a_proxy_without_a_scheme_is_http_and_ports_default_by_scheme() -> None:
    assert resolve({"HTTPS_PROXY": "proxy.corp:3128"}, "https://example.com/") == "http://proxy.corp:3128"
    assert resolve({"HTTPS_PROXY": "proxy.corp"}, "https://example.com/") == "http://proxy.corp:80"
    assert resolve({"HTTPS_PROXY": "https://proxy.corp"}, "https://example.com/") == "https://proxy.corp:443"


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.8.9.10", "[::1]", "LOCALHOST"], ids=str.lower
)
def test_loopback_is_never_proxied(host: str) -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128"}
    assert resolve(env, f"https://{host}:8443/") is None
    assert resolve(env, f"http://{host}/") is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("*", "pai-eas.cn-shanghai.aliyuncs.com", True),
        ("aliyuncs.com", "pai-eas.cn-shanghai.aliyuncs.com", True),
        ("aliyuncs.com", "aliyuncs.com", True),
        ("aliyuncs.com", "notaliyuncs.com", False),
        (".aliyuncs.com", "pai-eas.cn-shanghai.aliyuncs.com", True),
        (".aliyuncs.com", "aliyuncs.com", False),  # a leading dot: the subdomains only (Go)
        ("*.aliyuncs.com", "pai-eas.cn-shanghai.aliyuncs.com", True),
        ("*.aliyuncs.com", "aliyuncs.com", False),
        ("other.com, ALIYUNCS.COM ", "pai-eas.cn-shanghai.aliyuncs.com", True),
        ("aliyuncs.com:443", "pai-eas.cn-shanghai.aliyuncs.com", True),
        ("aliyuncs.com:8443", "pai-eas.cn-shanghai.aliyuncs.com", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3:443", "10.1.2.3", True),
        ("10.1.2.3:80", "10.1.2.3", False),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("fd00::/8", "[fd00::1]", True),
        ("[fd00::1]:443", "[fd00::1]", True),
        ("fd00::1", "[fd00::1]", True),
        ("garbage/99, ,", "pai-eas.cn-shanghai.aliyuncs.com", False),  # Go: bad entries are ignored
    ],
)
def test_no_proxy(no_proxy: str, host: str, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    assert (resolve(env, f"https://{host}/") is None) is bypassed
    assert (
        resolve({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": no_proxy}, f"https://{host}/") is None
    ) is (bypassed)


def test_each_endpoint_is_resolved_once_from_the_environment_read_at_creation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://first:3128")
    transport = AiohttpTransport()
    monkeypatch.setenv("HTTPS_PROXY", "http://second:3128")  # too late: read at creation
    url = URL("https://pai-eas.cn-shanghai.aliyuncs.com/api/v2/services")
    first = transport.proxies(url)
    assert first is not None
    assert first.address == "http://first:3128"
    assert transport.proxies(URL("https://pai-eas.cn-shanghai.aliyuncs.com/other?x=1")) is first
    assert len(transport.proxies._cache) == 1, "one entry per (scheme, host, port), not per request"
    assert AiohttpTransport().proxies(url).url.host == "second"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"socks5://{USER}:{PASSWORD}@proxy:1080", "socks5:// proxy"),
        (f"http://{USER}:{PASSWORD}@proxy:99999", "not a proxy URL"),
        (f"http://{USER}:{PASSWORD}@proxy:port", "not a proxy URL"),
        (f"http://{USER}:{PASSWORD}@:3128", "not a proxy URL"),
        (f"{USER}:{PASSWORD}@proxy corp:3128", "names no proxy host"),
    ],
)
def test_a_bad_proxy_is_a_config_error_naming_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("https_proxy", value)
    with pytest.raises(ConfigError) as caught:
        AiohttpTransport()
    message = str(caught.value)
    assert message.startswith("https_proxy=")
    assert why in message
    assert "http://HOST:PORT" in message
    assert PASSWORD not in message
    assert USER not in message
    assert "***@" in message


def test_credentials_never_show_in_a_repr() -> None:
    resolver = ProxyResolver.from_environment(
        {"HTTPS_PROXY": f"http://{USER}:{PASSWORD}@proxy.corp:3128", "NO_PROXY": "a.com,b.com"}
    )
    proxy = resolver(URL("https://pai-eas.cn-shanghai.aliyuncs.com/"))
    assert proxy is not None
    assert proxy.authorization == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in (str(proxy), repr(proxy), repr(resolver), repr(AiohttpTransport(proxies=resolver))):
        assert PASSWORD not in text, text
        assert USER not in text, text
        assert "proxy.corp:3128" in text
    # A %-encoded password (an "@" or ":" in it) is sent decoded, UTF-8, as curl and Go send it.
    encoded = ProxyResolver.from_environment({"HTTPS_PROXY": "http://bob:p%40ss%3Aw%C3%B6rd@proxy.corp:3128"})
    assert encoded(URL("https://example.com/")).authorization == (  # type: ignore[union-attr]
        "Basic " + base64.b64encode("bob:p@ss:wörd".encode()).decode()
    )
    assert redact_proxy_value(f"http://{USER}:{PASSWORD}@h:1/p@x") == "http://***@h:1/p@x"
    assert redact_proxy_value("h:1") == "h:1"


# --- a proxy on loopback -------------------------------------------------------------------------


@dataclass
class LoopbackProxy:
    """What the proxy saw: one line per request (``CONNECT host:port`` or ``GET http://...``)."""

    url: str
    names: dict[str, int]
    credentials: str | None = None
    seen: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve_proxy(
    names: dict[str, int], *, credentials: str | None = None
) -> AsyncIterator[LoopbackProxy]:
    """An HTTP proxy on 127.0.0.1: ``CONNECT`` tunnels and absolute-form requests (one per
    connection, ``Connection: close``), to ``names`` only (a name -> its loopback port).
    ``credentials`` (``user:password``) makes it answer 407 to anything else.
    """
    state = LoopbackProxy(url="", names=names, credentials=credentials)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, version = request_line.split(" ")
            headers = [line.partition(":") for line in lines if line]
            authorization = next(
                (value.strip() for name, _, value in headers if name.lower() == "proxy-authorization"), None
            )
            state.seen.append(f"{method} {target}")
            state.authorizations.append(authorization)
            if credentials is not None:
                expected = "Basic " + base64.b64encode(credentials.encode()).decode()
                if authorization != expected:
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
            authority = target if method == "CONNECT" else URL(target).raw_authority
            host, _, port = authority.rpartition(":")
            if host not in names or int(port) != names[host]:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", names[host])
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                path = URL(target).raw_path_qs
                kept = [
                    f"{name}:{value}"
                    for name, _, value in headers
                    if name.lower() not in ("proxy-authorization", "proxy-connection", "connection")
                ]
                upstream_writer.write(
                    "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""]).encode(
                        "latin-1"
                    )
                )
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()  # both closed before any await: a cancellation must not skip one
            if upstream_writer is not None:
                upstream_writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def scan_records(sim: Simulator, endpoints: dict[str, str]) -> tuple[list[bytes], int]:
    """The records of a scan of ``endpoints`` (plain http) in a set order, and the requests the
    simulator served."""
    before = sim.counters().total_requests
    async with Scanner(
        credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret, sim.security_token),
        endpoints=endpoints,
        allow_insecure_http=True,
    ) as scanner:
        stream = scanner.scan()
        records = sorted([orjson.dumps(record) async for record in stream])
    assert stream.summary.complete, stream.summary.failures
    return records, sim.counters().total_requests - before


@pytest.mark.asyncio
async def test_a_scan_goes_through_the_proxy_and_gets_exactly_the_direct_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_proxies(monkeypatch)
    async with Simulator(preset="small") as sim:
        direct, _ = await scan_records(sim, sim.endpoints)
        names = {f"eas-{region}.test": URL(url).port for region, url in sim.endpoints.items()}
        named = {region: f"http://eas-{region}.test:{URL(url).port}" for region, url in sim.endpoints.items()}
        async with serve_proxy(names) as proxy:  # type: ignore[arg-type]
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead_port()}")  # not for http:// URLs
            proxied, served = await scan_records(sim, named)
    assert direct, "the small fleet has instances"
    assert proxied == direct
    assert len(proxy.seen) == served, "every request the simulator served came through the proxy"
    assert all(line.startswith("GET http://eas-") for line in proxy.seen)


@pytest.mark.asyncio
async def test_loopback_is_reached_directly_with_a_dead_proxy_set(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://{USER}:{PASSWORD}@127.0.0.1:{dead_port()}"
    for name in PROXY_VARIABLES[:4]:
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with Simulator(preset="small") as sim:
        records, served = await scan_records(sim, sim.endpoints)
        localhost = {region: url.replace("127.0.0.1", "localhost") for region, url in sim.endpoints.items()}
        by_name, _ = await scan_records(sim, localhost)
    assert records
    assert served
    assert by_name == records


@pytest.mark.asyncio
async def test_no_proxy_sends_a_host_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"RequestId": "R"})

    app = web.Application()
    app.router.add_get("/ok", ok)
    async with serve_app(app) as base_url:
        port = URL(base_url).port
        assert port is not None
        async with serve_proxy({"eas.test": port, "other.test": port}) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "example.com,eas.test")
            async with AiohttpTransport() as transport:
                through = await transport.send(Request("GET", f"http://other.test:{port}/ok", {}))
                with pytest.raises(NetworkError) as caught:
                    await transport.send(Request("GET", f"http://eas.test:{port}/ok", {}))
    assert through.status == 200
    assert proxy.seen == [f"GET http://other.test:{port}/ok"]
    # Sent directly, the name does not resolve here (tests.netguard): no proxy was involved.
    message = str(caught.value)
    assert "eas.test" in message
    assert "proxy" not in message


@pytest.mark.asyncio
async def test_a_dead_proxy_is_named_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)
    port = dead_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    async with AiohttpTransport() as transport:
        with pytest.raises(NetworkError) as caught:
            await transport.send(Request("GET", "http://eas.test/api/v2/services", {}))
    message = str(caught.value)
    assert f"cannot connect to the proxy http://127.0.0.1:{port} (from HTTP_PROXY)" in message
    assert "NO_PROXY" in message
    assert_hidden(caught.value)


def assert_hidden(error: BaseException) -> None:
    """Neither the proxy's password nor its Basic header appears in the error or its causes."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen)):
            assert PASSWORD not in text, text
            assert basic not in text, text
        seen = seen.__cause__ or seen.__context__


@pytest.mark.asyncio
@pytest.mark.parametrize("given", [None, "scanner:wrong-password"], ids=["no credentials", "wrong ones"])
async def test_a_proxy_asking_for_credentials_says_so(
    monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    clear_proxies(monkeypatch)
    async with serve_proxy({"eas.test": 443}, credentials=f"{USER}:{PASSWORD}") as proxy:
        authority = proxy.url.removeprefix("http://")
        value = f"http://{given}@{authority}" if given else proxy.url
        monkeypatch.setenv("HTTPS_PROXY", value)
        monkeypatch.setenv("HTTP_PROXY", value)
        async with AiohttpTransport() as transport:
            errors = []
            for url in ("https://eas.test/api/v2/services", "http://eas.test/api/v2/services"):
                with pytest.raises(NetworkError) as caught:
                    await transport.send(Request("GET", url, {}))
                errors.append(caught.value)
    assert proxy.seen == ["CONNECT eas.test:443", "GET http://eas.test/api/v2/services"]
    for error, variable in zip(errors, ("HTTPS_PROXY", "HTTP_PROXY"), strict=True):
        message = str(error)
        assert f"the proxy {proxy.url} (from {variable}) requires credentials" in message
        assert "407" in message
        if given is None:
            assert f"{variable}=http://USER:PASSWORD@HOST:PORT" in message
        else:
            assert f"check the USER:PASSWORD in {variable}" in message
            assert "wrong-password" not in message
        assert_hidden(error)


@pytest.mark.asyncio
async def test_a_proxy_that_refuses_the_tunnel_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)
    async with serve_proxy({}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with AiohttpTransport() as transport:
            with pytest.raises(NetworkError) as caught:
                await transport.send(Request("GET", "https://eas.test/api/v2/services", {}))
    message = str(caught.value)
    assert f"the proxy {proxy.url} (from HTTPS_PROXY) refused to reach eas.test:443 (HTTP 502" in message
    assert "NO_PROXY" in message


@pytest.mark.asyncio
async def test_https_goes_through_a_connect_tunnel_with_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clear_proxies(monkeypatch)
    caplog.set_level(logging.DEBUG, logger="scanner.client.transport")
    cert, key = self_signed(tmp_path, "eas.test", stem="eas")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    # aiohttp builds its verifying context at import, before any SSL_CERT_FILE a test could set:
    # this test's one trusts the test certificate (and still checks the name and the chain).
    client_tls = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", client_tls)

    async def services(request: web.Request) -> web.Response:
        return web.json_response({"RequestId": "R-TLS", "Host": request.host, "Secure": request.secure})

    app = web.Application()
    app.router.add_get("/api/v2/services", services)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with serve_proxy({"eas.test": port}, credentials=f"{USER}:{PASSWORD}") as proxy:
            authority = proxy.url.removeprefix("http://")
            monkeypatch.setenv("HTTPS_PROXY", f"http://{USER}:{PASSWORD}@{authority}")
            async with AiohttpTransport() as transport:
                response = await transport.send(
                    Request("GET", f"https://eas.test:{port}/api/v2/services", {})
                )
    finally:
        await runner.cleanup()
    assert response.status == 200
    assert response.body == b'{"RequestId": "R-TLS", "Host": "eas.test:%d", "Secure": true}' % port
    assert proxy.seen == [f"CONNECT eas.test:{port}"]
    assert proxy.authorizations == ["Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    # -v shows the proxy in use, never its credentials.
    [logged] = [record.getMessage() for record in caplog.records if record.name == "scanner.client.transport"]
    assert f"Proxy({proxy.url}, from HTTPS_PROXY, with credentials)" in logged
    assert PASSWORD not in logged
