"""What ``Scanner`` accepts for the wire (connection limits, consistency, a transport) and how
the wire's errors end a scan: a body over the cap and a skewed clock are each one failed request,
never retried, with the code the summary reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

from scanner.client.api import EasClient
from scanner.client.credentials import StaticCredentials
from scanner.client.transport import ConnectionLimits, Timeouts
from scanner.engine.config import Concurrency, Consistency, RetryPolicy
from scanner.errors import ConfigError, NetworkError, ScanFailedError
from scanner.scanner import Scanner
from scanner.simulator import Simulator
from scanner.testing import FakeClock, MockTransport, Request, Response, json_response
from tests.loopback import serve_app

REGION = "cn-shanghai"
SERVICES = {"RequestId": "R-S", "TotalCount": 1, "PageNumber": 1, "PageSize": 100,
            "Services": [{"ServiceName": "svc", "Region": REGION}]}  # fmt: skip


def eas_app(instances: Callable[[web.Request], web.Response]) -> tuple[web.Application, list[str]]:
    """ListServices answers one service; ListServiceInstances answers what ``instances`` says."""
    seen: list[str] = []

    async def services(request: web.Request) -> web.Response:
        seen.append("ListServices")
        return web.json_response(SERVICES)

    async def listing(request: web.Request) -> web.Response:
        seen.append("ListServiceInstances")
        return instances(request)

    app = web.Application()
    app.router.add_get("/api/v2/services", services)
    app.router.add_get("/api/v2/services/{region}/{service}/instances", listing)
    return app, seen


def scanner_for(base_url: str, **options: object) -> Scanner:
    return Scanner(
        credentials=StaticCredentials("LTAI5tAbCdEfGh1234wxyz", "secret-0123456789"),
        endpoints={REGION: base_url},
        allow_insecure_http=True,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.asyncio
async def test_a_body_over_the_scanners_cap_fails_that_service_once_without_retry() -> None:
    huge = orjson.dumps({"RequestId": "R", "TotalCount": 1, "Instances": [{"Pad": "x" * 300_000}]})
    app, seen = eas_app(lambda request: web.Response(body=huge, content_type="application/json"))
    limits = ConnectionLimits(max_response_bytes=256 * 1024)
    async with serve_app(app) as base_url, scanner_for(base_url, connection_limits=limits) as scanner:
        stream = scanner.scan()
        records = [record async for record in stream]
    summary = stream.summary
    assert records == []
    assert not summary.complete
    [failure] = summary.failures
    assert (failure.region, failure.service, failure.code) == (REGION, "svc", "ResponseTooLarge")
    assert "larger than the 262,144-byte cap" in failure.message
    assert seen.count("ListServiceInstances") == 1  # never retried


@pytest.mark.asyncio
async def test_a_skewed_clock_fails_once_without_retry_and_says_how_far() -> None:
    body = {"RequestId": "R-TS", "Code": "InvalidTimeStamp.Expired", "Message": "expired"}
    app, seen = eas_app(
        lambda request: web.json_response(body, status=400, headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
    )
    async with serve_app(app) as base_url, scanner_for(base_url) as scanner:
        stream = scanner.scan()
        _ = [record async for record in stream]
    [failure] = stream.summary.failures
    assert failure.code == "InvalidTimeStamp.Expired"
    assert "minutes ahead of the server's (server Date: Mon, 01 Jan 2001 00:00:00 GMT)" in failure.message
    assert "enable NTP" in failure.message
    assert seen.count("ListServiceInstances") == 1


def test_scanner_accepts_connection_limits_and_consistency() -> None:
    limits = ConnectionLimits(max_response_bytes=1024)
    scanner = Scanner(connection_limits=limits, consistency=Consistency(page_size=10, max_passes=2))
    assert scanner._connection_limits is limits
    # The pool follows Concurrency unless sized explicitly; the cap is what was given.
    concurrency = Concurrency(total=40, per_region=5)
    built = Scanner(connection_limits=limits, concurrency=concurrency)._build_client()
    assert built._transport.limits == ConnectionLimits(total=40, per_host=5, max_response_bytes=1024)  # type: ignore[attr-defined]
    sized = ConnectionLimits(total=7, per_host=3, max_response_bytes=1024)
    built = Scanner(connection_limits=sized, concurrency=concurrency)._build_client()
    assert built._transport.limits == sized  # type: ignore[attr-defined]
    assert Scanner()._build_client()._transport.limits == ConnectionLimits(  # type: ignore[attr-defined]
        total=Concurrency().total, per_host=Concurrency().per_region
    )
    assert scanner._consistency == Consistency(page_size=10, max_passes=2)
    assert Scanner(page_size=7)._consistency == Consistency(page_size=7, max_passes=3)
    assert Scanner()._consistency == Consistency()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"connection_limits": 1024}, "connection_limits must be a ConnectionLimits"),
        ({"consistency": {"page_size": 10}}, "consistency must be a Consistency"),
        ({"consistency": Consistency(), "page_size": 10}, "not both"),
        ({"consistency": Consistency(), "max_passes": 2}, "not both"),
    ],
)
def test_scanner_rejects_wrong_wire_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Scanner(**options)  # type: ignore[arg-type]


# --- the transport seam ------------------------------------------------------------------------


def scripted_fleet(request: Request) -> Response:
    """A one-region fleet: service "svc" with two instances, answered without any server."""
    path = urlsplit(request.url).path
    if path == "/api/v2/services":
        return json_response(SERVICES)
    if path == f"/api/v2/services/{REGION}/svc/instances":
        items = [{"InstanceName": "i-1"}, {"InstanceName": "i-2"}]
        return json_response({"RequestId": "R-I", "TotalCount": 2, "PageNumber": 1, "PageSize": 100,
                              "Instances": items})  # fmt: skip
    return json_response({"Code": "InvalidAction.NotFound", "Message": path}, status=404)


@pytest.mark.asyncio
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync handler", "async handler"])
async def test_a_scanner_scans_through_an_injected_transport(asynchronous: bool) -> None:
    async def answer_later(request: Request) -> Response:
        return scripted_fleet(request)

    transport = MockTransport(answer_later if asynchronous else scripted_fleet)
    async with Scanner(
        credentials=StaticCredentials("LTAI5tAbCdEfGh1234wxyz", "secret-0123456789"),
        endpoints={REGION: "https://eas.invalid"},
        transport=transport,
    ) as scanner:
        stream = scanner.scan()
        names = sorted([record["InstanceName"] async for record in stream])
    assert names == ["i-1", "i-2"]
    summary = stream.summary
    assert summary.complete
    # Every request went through the transport, signed, and the summary counted each one.
    assert summary.requests == len(transport.requests) >= 2
    assert all(request.method == "GET" for request in transport.requests)
    assert all(
        "ACS3-HMAC-SHA256 Credential=" in request.headers["Authorization"] for request in transport.requests
    )
    assert summary.bytes_received == sum(len(scripted_fleet(request).body) for request in transport.requests)


@pytest.mark.asyncio
async def test_a_transport_error_from_an_injected_transport_is_a_failure_of_its_target() -> None:
    def refuse(request: Request) -> Response:
        if "/instances" in request.url:
            raise NetworkError("cannot connect to eas.invalid:443: refused")
        return scripted_fleet(request)

    policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
    async with Scanner(
        credentials=StaticCredentials("LTAI5tAbCdEfGh1234wxyz", "secret-0123456789"),
        endpoints={REGION: "https://eas.invalid"},
        transport=MockTransport(refuse),
        retry=policy,
    ) as scanner:
        stream = scanner.scan()
        _ = [record async for record in stream]
    [failure] = stream.summary.failures
    assert (failure.service, failure.code) == ("svc", "NetworkError")


@pytest.mark.parametrize(
    "options",
    [{"timeouts": Timeouts(read=1.0)}, {"connection_limits": ConnectionLimits()}],
    ids=["timeouts", "connection_limits"],
)
def test_a_transport_cannot_be_given_with_its_settings(options: dict[str, object]) -> None:
    transport = MockTransport(scripted_fleet)
    with pytest.raises(ConfigError, match="give a transport or timeouts/connection_limits, not both"):
        Scanner(transport=transport, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="give a transport or timeouts/connection_limits, not both"):
        EasClient(credentials=StaticCredentials("id-1234", "secret-1234"), transport=transport, **options)  # type: ignore[arg-type]


def test_a_response_has_case_insensitive_headers() -> None:
    response = Response(429, {"X-Acs-Retry-After": "1500", "date": "Sun, 06 Dec 2026 02:30:00 GMT"})
    assert (response.retry_after_ms, response.date, response.body) == (
        1500,
        "Sun, 06 Dec 2026 02:30:00 GMT",
        b"",
    )
    assert response.headers["x-acs-retry-after"] == "1500"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("server_ahead_s", "words"), [(20 * 60, "20 minutes behind"), (-45 * 60, "45 minutes ahead of")]
)
async def test_a_simulator_with_another_clock_is_named_as_clock_skew(
    server_ahead_s: float, words: str
) -> None:
    now = datetime.now(UTC)
    server_clock = FakeClock(wall_start=now + timedelta(seconds=server_ahead_s))
    async with Simulator(preset="small", auth_clock=server_clock) as sim:
        async with Scanner(
            credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret, sim.security_token),
            endpoints=sim.endpoints,
        ) as scanner:
            stream = scanner.scan()
            with pytest.raises(ScanFailedError):  # every region refused us
                _ = [record async for record in stream]
        requests = sim.counters().total_requests
    failures = stream.summary.failures
    assert failures
    for failure in failures:
        assert failure.code == "InvalidTimeStamp.Expired"
        assert f"the local clock is {words} the server's" in failure.message
    assert requests == len(failures)  # one request each: never retried


@pytest.mark.asyncio
async def test_the_testing_module_example_runs() -> None:
    def answer(request: Request) -> Response:
        if "/instances" in request.url:
            return json_response({"RequestId": "R", "TotalCount": 1, "Instances": [{"InstanceName": "i-1"}]})
        return json_response({"RequestId": "R", "TotalCount": 1, "Services": [{"ServiceName": "svc"}]})

    transport = MockTransport(answer)
    async with Scanner(credentials=StaticCredentials("id", "secret"), transport=transport) as s:
        stream = s.scan(regions=["cn-hangzhou"])
        records = [record async for record in stream]
    assert [record["InstanceName"] for record in records] == ["i-1"]
    assert stream.summary.complete
    assert len(transport.requests) == stream.summary.requests
