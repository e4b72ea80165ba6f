"""EasClient: the exact requests it sends, how it signs them, and every answer it can get back.

Component tier: the answers are scripted through the transport seam (``MockTransport``), so what
is tested is the client, not aiohttp (the transport's own mapping is in test_transport.py). Then
a few real-loopback tests, over the default aiohttp transport, where an aiohttp.web server
verifies our signatures as the simulator does (``acceptance.accept``: signature, date, nonce).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from scanner.client.api import EasClient, random_nonce
from scanner.client.credentials import Credentials, StaticCredentials
from scanner.client.transport import Timeouts
from scanner.eas import faults, signing
from scanner.eas.endpoints import EndpointResolver
from scanner.eas.models import Page, Region
from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.engine.retry import is_retryable
from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ClockSkewError,
    ConfigError,
    DecodeError,
    NetworkError,
    NotFoundError,
    RequestError,
    RequestTimeout,
    ResponseTooLargeError,
    ServerError,
    ThrottledError,
    UsageError,
)
from scanner.simulator.acceptance import NonceCache, accept
from scanner.testing import FakeClock, MockTransport, Request, Response
from tests.loopback import serve_app

AK_ID, SECRET = "testid", "testsecret"
STS_ID, STS_SECRET, TOKEN = "STS.tempid", "tempsecret-4321", "sts-token-abc/+=="
SECRETS = {AK_ID: SECRET, STS_ID: STS_SECRET}
USER_AGENT = "eas-fleet-scanner/test Python/3 aiohttp/3"
BASE = "https://pai-eas.cn-shanghai.aliyuncs.com"
HOST = "pai-eas.cn-shanghai.aliyuncs.com"
ANY_URL = re.compile(r"^https://pai-eas\.[a-z0-9-]+\.aliyuncs\.com/.*$")
DATE = "2026-01-01T00:00:00Z"  # FakeClock's wall time at 0
INSTANCES = f"{BASE}/api/v2/services/cn-shanghai/foo/instances"
EMPTY_PAGE = {"RequestId": "REQ-OK", "TotalCount": 0, "PageNumber": 1, "PageSize": 100}


def numbered_nonces() -> Iterator[str]:
    return (f"nonce-{i:04d}" for i in itertools.count(1))


def make_client(credentials: Any = None, **kwargs: Any) -> EasClient:
    nonces = numbered_nonces()
    options: dict[str, Any] = {
        "credentials": credentials or StaticCredentials(AK_ID, SECRET),
        "clock": FakeClock(),
        "nonce_factory": lambda: next(nonces),
        "user_agent": USER_AGENT,
        **kwargs,
    }
    return EasClient(**options)


class Scripted:
    """The API's answers, scripted in order and served through ``MockTransport``."""

    def __init__(self) -> None:
        self._answers: deque[tuple[re.Pattern[str], Response | BaseException, bool]] = deque()
        self.transport = MockTransport(self._answer)

    def get(
        self,
        url: re.Pattern[str],
        *,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        exception: BaseException | None = None,
        repeat: bool = False,
    ) -> None:
        """Answer the next request (every one, with ``repeat``) whose URL matches ``url``."""
        answer: Response | BaseException
        if exception is not None:
            answer = exception
        else:
            framing = {"Content-Type": content_type} if content_type else {}
            answer = Response(status, {**framing, **(headers or {})}, body)
        self._answers.append((url, answer, repeat))

    def _answer(self, request: Request) -> Response:
        assert self._answers, f"no answer scripted for {request.url}"
        pattern, answer, repeat = self._answers[0]
        if not repeat:
            self._answers.popleft()
        assert pattern.match(request.url), request.url
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def sent(self) -> list[tuple[str, dict[str, str]]]:
        """(URL exactly as handed to the transport, headers) of every request, in order."""
        assert all(request.method == "GET" for request in self.transport.requests)
        return [(request.url, dict(request.headers)) for request in self.transport.requests]


@pytest.fixture
def mocked() -> Scripted:
    return Scripted()


@pytest_asyncio.fixture
async def client(mocked: Scripted) -> AsyncIterator[EasClient]:
    async with make_client(transport=mocked.transport) as opened:
        yield opened


def verify(url: str, headers: dict[str, str]) -> signing.VerifiedRequest:
    """Check a sent request the way the API would (raises SignatureError)."""
    parts = urlsplit(url)
    return accept(
        method="GET",
        raw_path=parts.path,
        raw_query=parts.query,
        headers=list(headers.items()),
        body=b"",
        secret_for=SECRETS.get,
        now=FakeClock().wall(),
    )


def reply(mocked: Scripted, payload: Any = None, *, status: int = 200, **kwargs: Any) -> None:
    body = kwargs.pop("body", None)
    if body is None:
        body = orjson.dumps(EMPTY_PAGE if payload is None else payload)
    mocked.get(ANY_URL, status=status, body=body, **kwargs)


# --- the golden request --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_golden_list_service_instances_request(client: EasClient, mocked: Scripted) -> None:
    reply(mocked)
    await client.list_service_instances(
        "cn-shanghai", "foo", page_number=2, page_size=50, filter="10.0", instance_status="Running"
    )
    [(url, headers)] = mocked.sent()
    assert url == f"{INSTANCES}?Filter=10.0&InstanceStatus=Running&PageNumber=2&PageSize=50"
    signed_names = (
        "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
        "x-acs-version"
    )
    assert headers == {
        "host": HOST,
        "x-acs-version": "2021-07-01",
        "x-acs-action": "ListServiceInstances",
        "user-agent": USER_AGENT,
        "accept": "application/json",
        "x-acs-content-sha256": signing.EMPTY_BODY_SHA256,
        "x-acs-date": DATE,
        "x-acs-signature-nonce": "nonce-0001",
        "Authorization": (
            f"ACS3-HMAC-SHA256 Credential={AK_ID},SignedHeaders={signed_names},"
            "Signature=f60daeb612d4bfcd1c71cab794f0dda82e3cdb8396cecb4a93583ce545066af2"
        ),
    }
    # The literal above is also what the reference signer computes:
    unsigned = {k: v for k, v in headers.items() if k != "Authorization"}
    params = {"Filter": "10.0", "InstanceStatus": "Running", "PageNumber": "2", "PageSize": "50"}
    assert headers["Authorization"] == signing.sign(
        method="GET",
        canonical_uri="/api/v2/services/cn-shanghai/foo/instances",
        params=params,
        headers=unsigned,
        access_key_id=AK_ID,
        access_key_secret=SECRET,
    )
    assert verify(url, headers).action == "ListServiceInstances"


@pytest.mark.asyncio
async def test_each_request_gets_a_fresh_nonce_and_the_clock_time(mocked: Scripted) -> None:
    clock = FakeClock()
    reply(mocked, repeat=True)
    async with make_client(clock=clock, transport=mocked.transport) as client:
        await client.list_services("cn-shanghai")
        clock.advance(61.0)
        await client.list_services("cn-shanghai")
    (_, first), (_, second) = mocked.sent()
    assert (first["x-acs-signature-nonce"], second["x-acs-signature-nonce"]) == ("nonce-0001", "nonce-0002")
    assert (first["x-acs-date"], second["x-acs-date"]) == (DATE, "2026-01-01T00:01:01Z")


def test_the_client_package_exports_its_public_names() -> None:
    import scanner.client

    assert list(scanner.client.__all__) == sorted(scanner.client.__all__)
    public = {
        name
        for name, value in vars(scanner.client).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(scanner.client.__all__)
    for name in scanner.client.__all__:
        assert getattr(scanner.client, name).__module__.startswith("scanner.client."), name


def test_default_nonce_is_32_random_hex_digits() -> None:
    nonces = {random_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)


# --- every request parameter ---------------------------------------------------------------------

PAGING = "PageNumber=1&PageSize=100"

INSTANCE_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    # (API parameter, client arguments, the exact URL sent)
    (
        "ClusterId",
        {"region": "cn-hangzhou"},
        f"https://pai-eas.cn-hangzhou.aliyuncs.com/api/v2/services/cn-hangzhou/foo/instances?{PAGING}",
    ),
    (
        "ServiceName",
        {"service": "svc name/x~y*é"},
        f"{BASE}/api/v2/services/cn-shanghai/svc%20name%2Fx~y%2A%C3%A9/instances?{PAGING}",
    ),
    ("PageNumber", {"page_number": 3}, f"{INSTANCES}?PageNumber=3&PageSize=100"),
    ("PageSize", {"page_size": 20}, f"{INSTANCES}?PageNumber=1&PageSize=20"),
    (
        "Filter",
        {"filter": "10.118.0.1 a+b=c&d*~'()!"},
        f"{INSTANCES}?Filter=10.118.0.1%20a%2Bb%3Dc%26d%2A~%27%28%29%21&{PAGING}",
    ),
    (
        "ResourceType",
        {"resource_type": "DedicatedResource"},
        f"{INSTANCES}?{PAGING}&ResourceType=DedicatedResource",
    ),
    ("InstanceType", {"instance_type": "ecs.c7.large"}, f"{INSTANCES}?InstanceType=ecs.c7.large&{PAGING}"),
    ("InstanceStatus", {"instance_status": "Running"}, f"{INSTANCES}?InstanceStatus=Running&{PAGING}"),
    ("InstanceIP", {"instance_ip": "10.224.0.7"}, f"{INSTANCES}?InstanceIP=10.224.0.7&{PAGING}"),
    (
        "InstanceName",
        {"instance_name": "foo-bdc5xxxx-8l7rk"},
        f"{INSTANCES}?InstanceName=foo-bdc5xxxx-8l7rk&{PAGING}",
    ),
    ("HostIP", {"host_ip": "10.224.0.8"}, f"{INSTANCES}?HostIP=10.224.0.8&{PAGING}"),
    ("IsSpot", {"is_spot": True}, f"{INSTANCES}?IsSpot=true&{PAGING}"),
    ("IsSpot=false", {"is_spot": False}, f"{INSTANCES}?IsSpot=false&{PAGING}"),
    ("Role", {"role": "Queue"}, f"{INSTANCES}?{PAGING}&Role=Queue"),
    ("Sort", {"sort": "StartTime"}, f"{INSTANCES}?{PAGING}&Sort=StartTime"),
    ("Order", {"order": "desc"}, f"{INSTANCES}?Order=desc&{PAGING}"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("parameter", "arguments", "expected_url"), INSTANCE_PARAMETERS, ids=[p[0] for p in INSTANCE_PARAMETERS]
)
async def test_every_list_service_instances_parameter(
    client: EasClient, mocked: Scripted, parameter: str, arguments: dict[str, Any], expected_url: str
) -> None:
    reply(mocked)
    call = {"region": "cn-shanghai", "service": "foo", **arguments}
    await client.list_service_instances(call.pop("region"), call.pop("service"), **call)
    [(url, headers)] = mocked.sent()
    assert url == expected_url
    assert headers["x-acs-action"] == "ListServiceInstances"
    assert headers["host"] == urlsplit(expected_url).netloc
    verify(url, headers)


SERVICES = f"{BASE}/api/v2/services"

SERVICE_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    ("PageNumber", {"page_number": 4}, f"{SERVICES}?PageNumber=4&PageSize=100"),
    ("PageSize", {"page_size": 10}, f"{SERVICES}?PageNumber=1&PageSize=10"),
    ("Filter", {"filter": "foo bar"}, f"{SERVICES}?Filter=foo%20bar&{PAGING}"),
    ("Gateway", {"gateway": "gw-123"}, f"{SERVICES}?Gateway=gw-123&{PAGING}"),
    ("GroupName", {"group_name": "grp"}, f"{SERVICES}?GroupName=grp&{PAGING}"),
    (
        "Label",
        {"label": {"env": "prod", "k 2": "v/é"}},
        f"{SERVICES}?Label=%7B%22env%22%3A%22prod%22%2C%22k%202%22%3A%22v%2F%C3%A9%22%7D&{PAGING}",
    ),
    ("Order", {"order": "asc"}, f"{SERVICES}?Order=asc&{PAGING}"),
    ("ParentServiceUid", {"parent_service_uid": "p-1"}, f"{SERVICES}?{PAGING}&ParentServiceUid=p-1"),
    ("QuotaId", {"quota_id": "q-1"}, f"{SERVICES}?{PAGING}&QuotaId=q-1"),
    ("ResourceName", {"resource_name": "eas-r-1"}, f"{SERVICES}?{PAGING}&ResourceName=eas-r-1"),
    ("ResourceType", {"resource_type": "PublicResource"}, f"{SERVICES}?{PAGING}&ResourceType=PublicResource"),
    ("Role", {"role": "Standard"}, f"{SERVICES}?{PAGING}&Role=Standard"),
    ("ServiceName", {"service_name": "my svc"}, f"{SERVICES}?{PAGING}&ServiceName=my%20svc"),
    ("ServiceStatus", {"service_status": "Running"}, f"{SERVICES}?{PAGING}&ServiceStatus=Running"),
    ("ServiceType", {"service_type": "Async"}, f"{SERVICES}?{PAGING}&ServiceType=Async"),
    ("ServiceUid", {"service_uid": "eas-m-1"}, f"{SERVICES}?{PAGING}&ServiceUid=eas-m-1"),
    ("Sort", {"sort": "CreateTime"}, f"{SERVICES}?{PAGING}&Sort=CreateTime"),
    ("WorkspaceId", {"workspace_id": "1234"}, f"{SERVICES}?{PAGING}&WorkspaceId=1234"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("parameter", "arguments", "expected_url"), SERVICE_PARAMETERS, ids=[p[0] for p in SERVICE_PARAMETERS]
)
async def test_every_list_services_parameter(
    client: EasClient, mocked: Scripted, parameter: str, arguments: dict[str, Any], expected_url: str
) -> None:
    reply(mocked)
    await client.list_services("cn-shanghai", **arguments)
    [(url, headers)] = mocked.sent()
    assert url == expected_url
    assert headers["x-acs-action"] == "ListServices"
    verify(url, headers)


@pytest.mark.asyncio
async def test_all_parameters_at_once_are_sorted_and_signed(client: EasClient, mocked: Scripted) -> None:
    reply(mocked)
    query = InstanceQuery(
        filter="a b",
        resource_type="PublicResource",
        instance_type="ecs.c7.large",
        instance_status="Running",
        instance_ip="10.0.0.1",
        instance_name="n",
        host_ip="10.0.0.2",
        is_spot=False,
        role="Standard",
        sort="StartTime",
        order="asc",
    )
    await client.list_service_instances("cn-shanghai", "foo", query, page_number=2, page_size=7)
    [(url, headers)] = mocked.sent()
    assert url == (
        f"{INSTANCES}?Filter=a%20b&HostIP=10.0.0.2&InstanceIP=10.0.0.1&InstanceName=n&InstanceStatus=Running"
        "&InstanceType=ecs.c7.large&IsSpot=false&Order=asc&PageNumber=2&PageSize=7"
        "&ResourceType=PublicResource&Role=Standard&Sort=StartTime"
    )
    verify(url, headers)


@pytest.mark.asyncio
async def test_the_bytes_sent_are_the_bytes_signed(client: EasClient, mocked: Scripted) -> None:
    reply(mocked)
    await client.list_service_instances("cn-shanghai", "svc name/x~y*é", filter="*'")
    [(url, headers)] = mocked.sent()
    parts = urlsplit(url)
    canonical_path = "/api/v2/services/cn-shanghai/svc%20name%2Fx~y%2A%C3%A9/instances"
    canonical_query = signing.canonical_query({"Filter": "*'", "PageNumber": "1", "PageSize": "100"})
    assert (parts.path, parts.query) == (canonical_path, canonical_query)
    unsigned = {k: v for k, v in headers.items() if k != "Authorization"}
    assert headers["Authorization"] == signing.sign(
        method="GET",
        canonical_uri=parts.path,
        params={"Filter": "*'", "PageNumber": "1", "PageSize": "100"},
        headers=unsigned,
        access_key_id=AK_ID,
        access_key_secret=SECRET,
    )


@pytest.mark.asyncio
async def test_sts_credentials_add_signed_key_id_and_token(mocked: Scripted) -> None:
    reply(mocked)
    async with make_client(
        StaticCredentials(STS_ID, STS_SECRET, TOKEN), transport=mocked.transport
    ) as client:
        await client.list_services("cn-shanghai")
    [(url, headers)] = mocked.sent()
    assert headers["x-acs-accesskey-id"] == STS_ID
    assert headers["x-acs-security-token"] == TOKEN
    assert "x-acs-accesskey-id;x-acs-action" in headers["Authorization"]
    assert ";x-acs-security-token;" in headers["Authorization"]
    assert verify(url, headers).security_token == TOKEN


@pytest.mark.asyncio
async def test_refreshed_credentials_are_used_from_the_next_request(mocked: Scripted) -> None:
    class Rotating:
        def __init__(self) -> None:
            self.current = Credentials(AK_ID, SECRET)

        async def get_credentials(self) -> Credentials:
            return self.current

    provider = Rotating()
    reply(mocked, repeat=True)
    async with make_client(provider, transport=mocked.transport) as client:
        await client.list_services("cn-shanghai")
        provider.current = Credentials(STS_ID, STS_SECRET, TOKEN)
        await client.list_services("cn-shanghai")
    (_, first), (url, second) = mocked.sent()
    assert f"Credential={AK_ID}," in first["Authorization"]
    assert f"Credential={STS_ID}," in second["Authorization"]
    verify(url, second)


# --- filters and validation (before anything is sent) --------------------------------------------


@pytest.mark.asyncio
async def test_query_and_filters_merge_with_filters_winning(client: EasClient, mocked: Scripted) -> None:
    reply(mocked)
    query = InstanceQuery(instance_status="Running", order="asc")
    await client.list_service_instances("cn-shanghai", "foo", query, order="desc", is_spot=True)
    [(url, _)] = mocked.sent()
    assert url == f"{INSTANCES}?InstanceStatus=Running&IsSpot=true&Order=desc&{PAGING}"


@pytest.mark.asyncio
async def test_the_same_query_object_is_reused_across_pages(client: EasClient, mocked: Scripted) -> None:
    reply(mocked, repeat=True)
    query = ServiceQuery(label={"env": "prod"}, service_status="Running")
    for page in (1, 2, 3):
        await client.list_services("cn-shanghai", query, page_number=page)
    urls = [url for url, _ in mocked.sent()]
    assert urls == [
        f"{SERVICES}?Label=%7B%22env%22%3A%22prod%22%7D&PageNumber={n}&PageSize=100&ServiceStatus=Running"
        for n in (1, 2, 3)
    ]


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown filter", {"instance_state": "Running"}, "unknown InstanceQuery filter"),
    ("wrong type", {"is_spot": "yes"}, "IsSpot must be a boolean"),
    ("bad enum", {"role": "Boss"}, "Role must be one of"),
    ("not a string", {"instance_status": 3}, "InstanceStatus must be a string"),
    ("page number", {"page_number": 0}, "PageNumber must be a positive integer"),
    ("page size", {"page_size": "100"}, "PageSize must be a positive integer"),
    ("bool page", {"page_number": True}, "PageNumber must be a positive integer"),
    ("region", {"region": "Shanghai!"}, "invalid region id"),
    ("service", {"service": ""}, "service must be a non-empty"),
    ("query type", {"query": ServiceQuery()}, "query must be a InstanceQuery"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "arguments", "message"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_bad_arguments_are_config_errors_and_nothing_is_sent(
    client: EasClient, mocked: Scripted, case: str, arguments: dict[str, Any], message: str
) -> None:
    call = {"region": "cn-shanghai", "service": "foo", **arguments}
    with pytest.raises(ConfigError, match=message):
        await client.list_service_instances(call.pop("region"), call.pop("service"), **call)
    assert mocked.sent() == []


@pytest.mark.asyncio
async def test_bad_list_services_filter(client: EasClient, mocked: Scripted) -> None:
    with pytest.raises(ConfigError, match="Label must be a mapping of strings"):
        await client.list_services("cn-shanghai", label={"env": 1})
    with pytest.raises(ConfigError, match="unknown ServiceQuery filter"):
        await client.list_services("cn-shanghai", instance_status="Running")
    assert mocked.sent() == []


def test_user_agent_must_be_text() -> None:
    with pytest.raises(ConfigError, match="user_agent"):
        make_client(user_agent=" ")


# --- responses -------------------------------------------------------------------------------------

INSTANCE = {"InstanceName": "foo-5fc8946767-v1", "Status": "Running", "IsSpot": False, "LastState": [[]]}


@pytest.mark.asyncio
async def test_a_page_keeps_the_items_untouched(client: EasClient, mocked: Scripted) -> None:
    payload = {
        "RequestId": "R-1",
        "Instances": [INSTANCE, {"Unknown": {"x": 1}}],
        "PageNumber": 1,
        "PageSize": 20,
        "TotalCount": 2,
    }
    body = orjson.dumps(payload)
    reply(mocked, body=body)
    page = await client.list_service_instances("cn-shanghai", "foo", page_size=20)
    assert page == Page(
        items=[INSTANCE, {"Unknown": {"x": 1}}],
        total_count=2,
        page_number=1,
        page_size=20,
        request_id="R-1",
        body_bytes=len(body),
    )


@pytest.mark.asyncio
async def test_services_page(client: EasClient, mocked: Scripted) -> None:
    service = {"ServiceName": "foo", "Labels": [{"LabelKey": "env", "LabelValue": "prod"}]}
    reply(
        mocked, {"RequestId": "R-2", "Services": [service], "PageNumber": 1, "PageSize": 100, "TotalCount": 1}
    )
    page = await client.list_services("cn-shanghai")
    assert (page.items, page.total_count, page.request_id) == ([service], 1, "R-2")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"RequestId": "R", "TotalCount": 0},
        {"RequestId": "R", "TotalCount": 0, "Instances": None},
        {"RequestId": "R", "TotalCount": 40, "PageNumber": 3, "PageSize": 20},  # past the last page
    ],
)
async def test_a_missing_item_list_is_fine_when_the_page_is_empty(
    client: EasClient, mocked: Scripted, payload: dict[str, Any]
) -> None:
    reply(mocked, payload)
    page = await client.list_service_instances("cn-shanghai", "foo", page_number=3, page_size=20)
    assert page.items == []


@pytest.mark.asyncio
async def test_page_fields_missing_from_the_answer_default_to_the_request(
    client: EasClient, mocked: Scripted
) -> None:
    reply(mocked, {"TotalCount": 0}, headers={"x-acs-request-id": "HDR-1"})
    page = await client.list_service_instances("cn-shanghai", "foo", page_number=2, page_size=30)
    assert (page.page_number, page.page_size, page.request_id) == (2, 30, "HDR-1")


@pytest.mark.asyncio
async def test_describe_regions(client: EasClient, mocked: Scripted) -> None:
    reply(
        mocked,
        {
            "RequestId": "R-3",
            "Regions": [
                {"RegionId": "cn-shanghai", "RegionName": "华东2（上海）"},
                {"RegionId": "ap-southeast-1"},
            ],
        },
    )
    regions = await client.describe_regions("cn-beijing")
    assert regions == [Region("cn-shanghai", "华东2（上海）"), Region("ap-southeast-1", "")]
    [(url, headers)] = mocked.sent()
    assert url == "https://pai-eas.cn-beijing.aliyuncs.com/api/v2/regions"
    assert headers["x-acs-action"] == "DescribeRegions"
    verify(url, headers)


@pytest.mark.asyncio
async def test_describe_regions_default_endpoint(client: EasClient, mocked: Scripted) -> None:
    reply(mocked, {"RequestId": "R", "Regions": []})
    assert await client.describe_regions() == []
    [(url, _)] = mocked.sent()
    assert url == f"{BASE}/api/v2/regions"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"RequestId": "R-4"},
        {"RequestId": "R-4", "Regions": {}},
        {"RequestId": "R-4", "Regions": [{"RegionName": "x"}]},
        {"RequestId": "R-4", "Regions": ["cn-shanghai"]},
    ],
)
async def test_describe_regions_wrong_shapes(client: EasClient, mocked: Scripted, payload: Any) -> None:
    reply(mocked, payload)
    with pytest.raises(DecodeError) as caught:
        await client.describe_regions()
    assert (caught.value.action, caught.value.region, caught.value.request_id) == (
        "DescribeRegions",
        "cn-shanghai",
        "R-4",
    )


# --- errors, each from a realistic response ---------------------------------------------------------


def spec_body(spec: faults.ErrorSpec, request_id: str) -> bytes:
    return orjson.dumps(spec.body(request_id))


ERROR_CASES: list[
    tuple[str, int, dict[str, str], bytes, type[ApiError], str | None, str | None, int | None]
] = [
    # (case, status, headers, body, class, code, request id, retry_after_ms)
    (
        "429 retry-after",
        429,
        {"x-acs-retry-after": "1500"},
        spec_body(faults.THROTTLING, "R-429"),
        ThrottledError,
        "Throttling",
        "R-429",
        1500,
    ),
    (
        "Throttling.User",
        400,
        {},
        spec_body(faults.THROTTLING_USER, "R-TU"),
        ThrottledError,
        "Throttling.User",
        "R-TU",
        None,
    ),
    (
        "ServiceUnavailable",
        503,
        {},
        spec_body(faults.SERVICE_UNAVAILABLE, "R-503"),
        ServerError,
        "ServiceUnavailable",
        "R-503",
        None,
    ),
    (
        "InternalError",
        500,
        {},
        spec_body(faults.INTERNAL_ERROR, "R-500"),
        ServerError,
        "InternalError",
        "R-500",
        None,
    ),
    (
        "Forbidden.RAM",
        403,
        {},
        spec_body(faults.FORBIDDEN_RAM, "R-403"),
        AuthError,
        "Forbidden.RAM",
        "R-403",
        None,
    ),
    (
        "InvalidAccessKeyId",
        404,
        {},
        spec_body(faults.INVALID_ACCESS_KEY_ID, "R-AK"),
        AuthError,
        "InvalidAccessKeyId.NotFound",
        "R-AK",
        None,
    ),
    (
        "SignatureDoesNotMatch",
        400,
        {},
        spec_body(faults.SIGNATURE_DOES_NOT_MATCH, "R-SIG"),
        AuthError,
        "SignatureDoesNotMatch",
        "R-SIG",
        None,
    ),
    (
        "InvalidService.NotFound",
        404,
        {},
        spec_body(faults.SERVICE_NOT_FOUND, "R-404"),
        NotFoundError,
        "InvalidService.NotFound",
        "R-404",
        None,
    ),
    (
        "InvalidParameter",
        400,
        {},
        spec_body(faults.INVALID_PARAMETER, "R-400"),
        BadRequestError,
        "InvalidParameter",
        "R-400",
        None,
    ),
    (
        "502 HTML",
        502,
        {"x-acs-request-id": "GW-502", "Content-Type": "text/html"},
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
        ServerError,
        None,
        "GW-502",
        None,
    ),
    (
        "lower-case keys",
        400,
        {},
        b'{"requestId":"r-lc","code":"InvalidParameter","message":"bad"}',
        BadRequestError,
        "InvalidParameter",
        "r-lc",
        None,
    ),
    ("empty 500", 500, {}, b"", ServerError, None, None, None),
    ("429 without a code", 429, {}, b"{}", ThrottledError, None, None, None),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "status", "headers", "body", "cls", "code", "request_id", "retry_after_ms"),
    ERROR_CASES,
    ids=[c[0] for c in ERROR_CASES],
)
async def test_every_error_class_from_a_realistic_response(
    client: EasClient,
    mocked: Scripted,
    case: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    cls: type[ApiError],
    code: str | None,
    request_id: str | None,
    retry_after_ms: int | None,
) -> None:
    reply(mocked, status=status, headers=headers, body=body)
    with pytest.raises(ApiError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    error = caught.value
    assert type(error) is cls
    assert (error.region, error.action, error.service) == ("cn-shanghai", "ListServiceInstances", "foo")
    assert (error.status, error.code, error.request_id, error.retry_after_ms) == (
        status,
        code,
        request_id,
        retry_after_ms,
    )
    assert error.message
    if case == "502 HTML":
        assert "502 Bad Gateway" in error.message
        assert "<" not in error.message


DECODE_CASES: list[tuple[str, bytes, str | None]] = [
    ("not JSON", b"OK", None),
    ("truncated", b'{"RequestId": "R-T", "Instances": [{"InstanceName": "a"}', None),
    ("a list", b"[]", None),
    ("items not a list", b'{"RequestId": "R-5", "TotalCount": 1, "Instances": {"a": 1}}', "R-5"),
    ("items not objects", b'{"RequestId": "R-6", "TotalCount": 1, "Instances": ["a"]}', "R-6"),
    ("one item not an object", b'{"RequestId": "R-12", "TotalCount": 2, "Instances": [{}, null]}', "R-12"),
    ("TotalCount missing", b'{"RequestId": "R-7", "Instances": [{"InstanceName": "a"}]}', "R-7"),
    ("TotalCount null", b'{"RequestId": "R-13", "TotalCount": null, "Instances": [{}]}', "R-13"),
    ("TotalCount a string", b'{"RequestId": "R-8", "TotalCount": "1", "Instances": []}', "R-8"),
    ("TotalCount a bool", b'{"RequestId": "R-9", "TotalCount": true, "Instances": []}', "R-9"),
    ("items missing but due", b'{"RequestId": "R-10", "TotalCount": 3}', "R-10"),
    ("PageSize not an int", b'{"RequestId": "R-11", "TotalCount": 0, "PageSize": "20 items"}', "R-11"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "body", "request_id"), DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
async def test_2xx_bodies_that_are_not_a_page_are_decode_errors(
    client: EasClient, mocked: Scripted, case: str, body: bytes, request_id: str | None
) -> None:
    reply(mocked, body=body)
    with pytest.raises(DecodeError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    error = caught.value
    assert (error.region, error.action, error.service, error.status) == (
        "cn-shanghai",
        "ListServiceInstances",
        "foo",
        200,
    )
    assert error.request_id == request_id
    assert len(mocked.transport.requests) == 1


def _refused() -> NetworkError:
    return NetworkError(f"cannot connect to {HOST}:443: [Errno 111] Connection refused")


# What the transport raises (its mapping of aiohttp's errors is tested in test_transport.py).
TRANSPORT_CASES: list[tuple[str, BaseException, type[RequestError]]] = [
    ("refused", _refused(), NetworkError),
    ("reset", NetworkError("ClientOSError: [Errno 104] Connection reset by peer"), NetworkError),
    ("disconnected", NetworkError("the server closed the connection: Server disconnected"), NetworkError),
    ("timeout", RequestTimeout("the request took longer than 30s"), RequestTimeout),
    ("too large", ResponseTooLargeError("the response is larger than the 32 MiB cap"), ResponseTooLargeError),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "failure", "cls"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
async def test_transport_errors_name_the_target(
    client: EasClient, mocked: Scripted, case: str, failure: BaseException, cls: type[RequestError]
) -> None:
    mocked.get(ANY_URL, exception=failure)
    with pytest.raises(RequestError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    error = caught.value
    assert type(error) is cls
    assert (error.region, error.action, error.service) == ("cn-shanghai", "ListServiceInstances", "foo")
    assert (error.status, error.code, error.request_id) == (None, None, None)
    assert "ListServiceInstances region=cn-shanghai service=foo" in str(error)


@pytest.mark.asyncio
async def test_each_call_is_one_request_whatever_its_answer(client: EasClient, mocked: Scripted) -> None:
    ok = orjson.dumps(EMPTY_PAGE)
    failed = spec_body(faults.INTERNAL_ERROR, "R")
    mocked.get(ANY_URL, body=ok)
    mocked.get(ANY_URL, status=500, body=failed)
    mocked.get(ANY_URL, exception=RequestTimeout("the request took longer than 30s"))
    await client.list_services("cn-shanghai")
    with pytest.raises(ServerError):
        await client.list_services("cn-shanghai")
    with pytest.raises(RequestTimeout):
        await client.list_services("cn-shanghai")
    assert len(mocked.transport.requests) == 3  # no retries at this level


# --- lifecycle and secrets ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lifecycle_unopened_opened_closed() -> None:
    client = make_client()
    with pytest.raises(UsageError, match="not open"):
        await client.list_services("cn-shanghai")
    async with client:
        with pytest.raises(UsageError, match="more than once"):
            await client.__aenter__()
    with pytest.raises(UsageError, match="has been closed"):
        await client.describe_regions()
    with pytest.raises(UsageError, match="Cannot reopen"):
        async with client:
            pass


@pytest.mark.asyncio
async def test_no_secret_in_logs_errors_or_reprs(mocked: Scripted, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.get(ANY_URL, body=orjson.dumps(EMPTY_PAGE))
    mocked.get(ANY_URL, status=403, body=spec_body(faults.FORBIDDEN_RAM, "R"))
    mocked.get(ANY_URL, exception=_refused())
    mocked.get(ANY_URL, body=b"not json")
    texts: list[str] = []
    async with make_client(
        StaticCredentials(STS_ID, STS_SECRET, TOKEN), transport=mocked.transport
    ) as client:
        texts.append(repr(client))
        await client.list_services("cn-shanghai")
        for _ in range(3):
            with pytest.raises(RequestError) as caught:
                await client.list_service_instances("cn-shanghai", "foo")
            texts += [str(caught.value), repr(caught.value), repr(caught.value.__cause__)]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        assert STS_SECRET not in text
        assert TOKEN not in text


# --- real loopback: a server that verifies our signatures ------------------------------------------


def verifying_app(seen: list[tuple[str, int]], *, delay: float = 0.0) -> web.Application:
    """An EAS stand-in that checks every signature as the real API would, and records the request."""
    nonces = NonceCache()

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.raw_path, peer[1] if peer else -1))
        try:
            verified = accept(
                method=request.method,
                raw_path=request.raw_path.partition("?")[0],
                raw_query=request.raw_path.partition("?")[2],
                headers=[(k.decode(), v.decode()) for k, v in request.raw_headers],
                body=await request.read(),
                secret_for=SECRETS.get,
                now=FakeClock().wall(),
                nonces=nonces,
            )
        except signing.SignatureError as exc:
            return web.json_response(faults.error_body(exc.code, exc.message, "R-SIG"), status=exc.status)
        if delay:
            await asyncio.sleep(delay)
        items = [{"InstanceName": request.match_info.get("service", ""), "Action": verified.action}]
        key = "Instances" if "service" in request.match_info else "Services"
        return web.json_response({"RequestId": "R-OK", "TotalCount": 1, key: items})

    app = web.Application()
    app.router.add_get("/api/v2/services/{cluster}/{service}/instances", handle)
    app.router.add_get("/api/v2/services", handle)
    return app


AWKWARD_NAMES = ["svc*star", "svc name", "it's", "服务-é", "svc name/x~y*é'()!", "a+b=c&d"]


@pytest.mark.asyncio
async def test_the_server_accepts_our_signatures_with_awkward_names_over_one_connection() -> None:
    seen: list[tuple[str, int]] = []
    async with serve_app(verifying_app(seen)) as base_url:
        endpoints = EndpointResolver({"cn-shanghai": base_url})
        async with make_client(endpoints=endpoints) as client:
            for name in AWKWARD_NAMES:
                page = await client.list_service_instances(
                    "cn-shanghai", name, filter=name, instance_name=name
                )
                assert page.items == [{"InstanceName": name, "Action": "ListServiceInstances"}]
            await client.list_services("cn-shanghai", label={"k 1": "v*'é"}, filter="* '")
    assert len(seen) == len(AWKWARD_NAMES) + 1
    assert len({port for _, port in seen}) == 1  # one session, one kept-alive connection
    raw_path, _ = seen[0]
    assert raw_path == (
        "/api/v2/services/cn-shanghai/svc%2Astar/instances"
        "?Filter=svc%2Astar&InstanceName=svc%2Astar&PageNumber=1&PageSize=100"
    )


@pytest.mark.asyncio
async def test_the_server_rejects_a_wrong_secret_as_auth_error() -> None:
    seen: list[tuple[str, int]] = []
    async with serve_app(verifying_app(seen)) as base_url:
        endpoints = EndpointResolver({"cn-shanghai": base_url})
        async with make_client(StaticCredentials(AK_ID, "not-the-secret"), endpoints=endpoints) as client:
            with pytest.raises(AuthError) as caught:
                await client.list_service_instances("cn-shanghai", "foo")
    assert (caught.value.code, caught.value.status, caught.value.service) == (
        "SignatureDoesNotMatch",
        400,
        "foo",
    )


@pytest.mark.asyncio
async def test_a_slow_server_gives_request_timeout_naming_the_target() -> None:
    seen: list[tuple[str, int]] = []
    async with serve_app(verifying_app(seen, delay=1.0)) as base_url:
        endpoints = EndpointResolver({"cn-shanghai": base_url})
        async with make_client(endpoints=endpoints, timeouts=Timeouts(read=0.1)) as client:
            with pytest.raises(RequestTimeout) as caught:
                await client.list_service_instances("cn-shanghai", "foo")
    assert (caught.value.region, caught.value.action, caught.value.service) == (
        "cn-shanghai",
        "ListServiceInstances",
        "foo",
    )


@pytest.mark.asyncio
async def test_a_server_closing_mid_body_gives_network_error_naming_the_target() -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "5000", "Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"RequestId": "R", "Instances": [')
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/api/v2/services", hang_up)
    async with serve_app(app) as base_url:
        endpoints = EndpointResolver({"cn-shanghai": base_url})
        async with make_client(endpoints=endpoints) as client:
            with pytest.raises(NetworkError) as caught:
                await client.list_services("cn-shanghai")
    assert (caught.value.region, caught.value.action, caught.value.service) == (
        "cn-shanghai",
        "ListServices",
        None,
    )


# --- clock skew, named ----------------------------------------------------------------------------

# FakeClock's wall time is 2026-01-01T00:00:00Z.
SKEW_CASES: list[tuple[str, str, str | None, type[ApiError], str]] = [
    # (case, code, server Date, class, message must contain)
    (
        "expired, 20 min behind",
        "InvalidTimeStamp.Expired",
        "Thu, 01 Jan 2026 00:20:00 GMT",
        ClockSkewError,
        "the local clock is 20 minutes behind the server's (server Date: Thu, 01 Jan 2026 00:20:00 GMT); "
        "set the system clock (e.g. enable NTP) and run again",
    ),
    (
        "expired, 90 min ahead",
        "InvalidTimeStamp.Expired",
        "Wed, 31 Dec 2025 22:30:00 GMT",
        ClockSkewError,
        "the local clock is 90 minutes ahead of the server's (server Date: Wed, 31 Dec 2025 22:30:00 GMT)",
    ),
    (
        "expired, no Date",
        "InvalidTimeStamp.Expired",
        None,
        ClockSkewError,
        "the server refused the request's timestamp: check that the local clock is right (NTP)",
    ),
    (
        "expired, unreadable Date",
        "InvalidTimeStamp.Expired",
        "yesterday",
        ClockSkewError,
        "the server refused the request's timestamp",
    ),
    (
        "signature, 6 min behind",
        "SignatureDoesNotMatch",
        "Thu, 01 Jan 2026 00:06:10 GMT",
        ClockSkewError,
        "the local clock is 6 minutes behind",
    ),
    (
        "other timestamp code, 1 h ahead",
        "InvalidTimeStamp.Format",
        "Wed, 31 Dec 2025 23:00:00 GMT",
        ClockSkewError,
        "the local clock is 60 minutes ahead of",
    ),
    (
        "signature, 2 min behind: not the clock",
        "SignatureDoesNotMatch",
        "Thu, 01 Jan 2026 00:02:00 GMT",
        AuthError,
        "Specified signature",
    ),
    ("signature, no Date: not the clock", "SignatureDoesNotMatch", None, AuthError, "Specified signature"),
    (
        "another auth code, far off: not the clock",
        "Forbidden.RAM",
        "Thu, 01 Jan 2026 02:00:00 GMT",
        AuthError,
        "not authorized",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "code", "date", "cls", "expected"), SKEW_CASES, ids=[c[0] for c in SKEW_CASES]
)
async def test_a_refused_timestamp_names_the_clock_skew(
    client: EasClient,
    mocked: Scripted,
    case: str,
    code: str,
    date: str | None,
    cls: type[ApiError],
    expected: str,
) -> None:
    message = {
        "SignatureDoesNotMatch": "Specified signature is not matched with our calculation.",
        "Forbidden.RAM": "User not authorized to operate on the specified resource.",
    }.get(code, "Specified time stamp or date header is expired.")
    headers = {"Date": date} if date is not None else {}
    reply(mocked, status=400, headers=headers, body=orjson.dumps(faults.error_body(code, message, "R-TS")))
    with pytest.raises(AuthError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    error = caught.value
    assert type(error) is cls
    assert expected in error.message
    assert (error.code, error.kind, error.status, error.request_id) == (code, code, 400, "R-TS")
    assert not is_retryable(error)


# --- non-JSON answers ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_html_404_shows_a_short_snippet_and_its_kind_is_http404(
    client: EasClient, mocked: Scripted
) -> None:
    page = (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title>\n<style>p{}</style></head>\n"
        b"<body>\n  <h1>Not   Found</h1>\n<p>The requested URL &amp; path was not found on this server."
        b" Please check the address and try again later, or contact the administrator.</p></body></html>"
    )
    reply(mocked, status=404, headers={"Content-Type": "text/html; charset=utf-8"}, body=page)
    with pytest.raises(NotFoundError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    error = caught.value
    assert (error.code, error.kind) == (None, "HTTP404")
    prefix = 'HTTP 404 with a non-JSON body (text/html): "'
    assert error.message.startswith(prefix)
    assert error.message.endswith('…"')
    snippet = error.message[len(prefix) : -1]
    assert len(snippet) == 80
    assert snippet.startswith("404 Not Found p{} Not Found The requested URL & path was not found")
    assert "<" not in snippet
    assert "  " not in snippet
    assert "\n" not in snippet


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "", "HTTP 404 with no error message"),
        (b"Not Found", "text/plain", 'HTTP 404 with a non-JSON body (text/plain): "Not Found"'),
        (b"Not Found", "", 'HTTP 404 with a non-JSON body: "Not Found"'),  # no media type
        (b"{}", "application/json", "HTTP 404 with no error message"),
    ],
)
async def test_a_404_without_a_json_code_is_http404(
    client: EasClient, mocked: Scripted, body: bytes, content_type: str, message: str
) -> None:
    reply(mocked, status=404, body=body, content_type=content_type)
    with pytest.raises(NotFoundError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    assert (caught.value.kind, caught.value.message) == ("HTTP404", message)


@pytest.mark.asyncio
async def test_a_404_with_a_json_code_keeps_the_code_as_its_kind(client: EasClient, mocked: Scripted) -> None:
    reply(mocked, status=404, body=spec_body(faults.ROUTE_NOT_FOUND, "R-404"))
    with pytest.raises(NotFoundError) as caught:
        await client.list_service_instances("cn-shanghai", "foo")
    assert caught.value.kind == "InvalidAction.NotFound"


# --- redaction of what a server echoes -----------------------------------------------------------

ECHO_ID = "LTAI5tAbCdEfGh1234wxyz"
ECHO_SECRET = "Sec/ret+Value0123456789abcdefAB"
ECHO_TOKEN = "CAIS+token/with/slashes==" + "Zq" * 200
OTHER_ID = "LTAI9zYxWvUtSr5678abcd"


def _echoed_headers() -> str:
    """What a misbehaving gateway puts in its error page: the request's own headers."""
    return (
        f"authorization: ACS3-HMAC-SHA256 Credential={ECHO_ID},SignedHeaders=accept;host,Signature=ab12 "
        f"x-acs-accesskey-id: {ECHO_ID} x-acs-security-token: {ECHO_TOKEN} "
        f"secret={ECHO_SECRET} someone-else={OTHER_ID}"
    )


def _assert_clean(*texts: str) -> None:
    for text in texts:
        assert ECHO_ID not in text
        assert OTHER_ID not in text
        assert ECHO_SECRET not in text
        assert ECHO_TOKEN not in text
        assert ECHO_TOKEN[:40] not in text  # not even a cut-off piece of the token
        assert "CAIS+token" not in text
        assert "Sec/ret" not in text


def _echo_client(mocked: Scripted) -> EasClient:
    return make_client(StaticCredentials(ECHO_ID, ECHO_SECRET, ECHO_TOKEN), transport=mocked.transport)


def _texts(error: BaseException) -> list[str]:
    assert isinstance(error, RequestError)
    return [
        str(error),
        repr(error),
        *map(str, error.args),
        error.message,
        error.code or "",
        error.request_id or "",
    ]


@pytest.mark.asyncio
async def test_an_error_body_that_echoes_the_request_headers_is_redacted(mocked: Scripted) -> None:
    echo = _echoed_headers()
    body = orjson.dumps({"RequestId": f"R-{ECHO_ID}", "Code": "InvalidParameter", "Message": echo})
    reply(mocked, status=400, body=body, headers={"x-acs-request-id": ECHO_TOKEN})
    async with _echo_client(mocked) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    texts = _texts(caught.value)
    _assert_clean(*texts)
    message = caught.value.message
    assert "Credential=LTAI****wxyz," in message
    assert "x-acs-security-token: *** " in message
    assert "secret=*** " in message
    assert "someone-else=LTAI****abcd" in message
    assert caught.value.request_id == "R-LTAI****wxyz"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [403, 502])
async def test_an_html_page_that_echoes_the_request_headers_is_redacted(
    mocked: Scripted, status: int
) -> None:
    # The secrets sit right where the 80-character snippet is cut.
    page = f"<html><body><pre>Forbidden{'.' * 30} {_echoed_headers()}</pre></body></html>".encode()
    reply(
        mocked, status=status, body=page, headers={"Content-Type": "text/html", "x-acs-request-id": ECHO_ID}
    )
    async with _echo_client(mocked) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    _assert_clean(*_texts(caught.value))
    assert caught.value.request_id == "LTAI****wxyz"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        f"<html>{_echoed_headers()}</html>".encode(),  # not JSON
        orjson.dumps({"RequestId": ECHO_ID, "TotalCount": ECHO_TOKEN}),  # JSON, wrong shape
        orjson.dumps({"RequestId": "R", "TotalCount": 1, "Instances": {"echo": _echoed_headers()}}),
    ],
    ids=["not JSON", "TotalCount echoes", "items echo"],
)
async def test_a_decode_error_of_an_echoing_body_is_redacted(mocked: Scripted, body: bytes) -> None:
    reply(mocked, body=body)
    async with _echo_client(mocked) as client:
        with pytest.raises(DecodeError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    _assert_clean(*_texts(caught.value))


@pytest.mark.asyncio
async def test_a_page_that_carries_the_secret_or_token_is_scrubbed_before_decoding(
    mocked: Scripted,
) -> None:
    items = [
        {"InstanceName": "a", "Env": f"TOKEN={ECHO_TOKEN}"},
        {"InstanceName": "b", "Env": f"SECRET={ECHO_SECRET}"},
    ]
    # orjson never escapes "/", but other encoders do: the scrub knows both spellings.
    escaped = orjson.dumps({"RequestId": "R", "TotalCount": 2, "Instances": items}).replace(b"/", b"\\/")
    reply(mocked, body=escaped)
    async with _echo_client(mocked) as client:
        page = await client.list_service_instances("cn-shanghai", "foo")
    assert [item["Env"] for item in page.items] == ["TOKEN=***", "SECRET=***"]
    assert [item["InstanceName"] for item in page.items] == ["a", "b"]


@pytest.mark.asyncio
async def test_a_transport_error_message_is_redacted(mocked: Scripted) -> None:
    mocked.get(ANY_URL, exception=NetworkError(f"ClientOSError: reset near {ECHO_TOKEN}"))
    async with _echo_client(mocked) as client:
        with pytest.raises(NetworkError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    _assert_clean(*_texts(caught.value))
