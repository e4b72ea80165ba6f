"""EasClient against answers real servers give that the API reference does not show (the
end-to-end cases are in tests/hostile/test_real_servers.py): the client-level details."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from scanner import Scanner
from scanner.client.api import standard_retry_after_ms
from scanner.client.credentials import StaticCredentials
from scanner.errors import ApiError, AuthError, DecodeError, ScanFailedError, ServerError, ThrottledError
from scanner.testing import FakeClock, MockTransport, Request, Response, json_response
from tests.test_client import AK_ID, SECRET, Scripted, make_client, reply


@pytest.mark.asyncio
async def test_an_error_code_in_a_200_is_that_error_for_every_operation() -> None:
    mocked = Scripted()
    body = orjson.dumps({"RequestId": "R-1", "Code": "Throttling.User", "Message": f"slow down {SECRET}"})
    for _ in range(3):
        reply(mocked, body=body)
    async with make_client(transport=mocked.transport) as client:
        for call in (
            client.describe_regions(),
            client.list_services("cn-shanghai"),
            client.list_service_instances("cn-shanghai", "foo"),
        ):
            with pytest.raises(ThrottledError) as caught:
                await call
            error = caught.value
            assert (error.status, error.code, error.request_id) == (200, "Throttling.User", "R-1")
            assert SECRET not in str(error), "the server's words are redacted like any error's"


@pytest.mark.asyncio
async def test_an_echoed_key_id_in_a_200_error_is_masked() -> None:
    mocked = Scripted()
    reply(mocked, body=orjson.dumps({"Code": "Forbidden.RAM", "Message": f"key {AK_ID} may not"}))
    async with make_client(transport=mocked.transport) as client:
        with pytest.raises(AuthError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    assert AK_ID not in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["Success", "200", "OK"])
async def test_a_success_code_without_the_data_is_still_not_a_page(code: str) -> None:
    """Some APIs put ``"Code": "Success"`` in every good answer: that is no error to report."""
    mocked = Scripted()
    reply(mocked, body=orjson.dumps({"RequestId": "R-2", "Code": code, "Data": {}}))
    async with make_client(transport=mocked.transport) as client:
        with pytest.raises(DecodeError):
            await client.list_service_instances("cn-shanghai", "foo")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"RequestId": "R-3", "PageNumber": 2},
        {"RequestId": "R-3", "PageSize": 50},
        {"RequestId": "R-3", "TotalCount": None, "PageNumber": None, "PageSize": None, "Instances": None},
        {"RequestId": "R-3", "PageNumber": None, "Instances": []},
        {"RequestId": "R-3", "TotalCount": 0, "PageNumber": 0, "PageSize": 0, "Instances": []},
        {"RequestId": "R-3", "TotalCount": 0, "PageNumber": "2", "PageSize": "50", "Instances": []},
    ],
    ids=["only PageNumber", "only PageSize", "all null", "paging null", "paging 0", "paging as text"],
)
async def test_an_empty_page_with_its_zero_values_left_out_or_null(payload: dict[str, object]) -> None:
    mocked = Scripted()
    reply(mocked, payload)
    async with make_client(transport=mocked.transport) as client:
        page = await client.list_service_instances("cn-shanghai", "foo", page_number=2, page_size=50)
    expected_number = int(str(payload.get("PageNumber") or 2))
    assert (page.items, page.total_count, page.page_number, page.page_size) == ([], 0, expected_number, 50)
    assert page.request_id == "R-3"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        {"RequestId": "R-4", "Data": {"Instances": [{"InstanceName": "a"}]}},
        {"Instances": [{"InstanceName": "a"}]},
        {"RequestId": "R-4"},
    ],
    ids=["another shape", "items without a count", "a RequestId alone"],
)
async def test_a_body_without_a_count_is_an_empty_page_only_when_it_is_a_page(
    payload: dict[str, object],
) -> None:
    mocked = Scripted()
    reply(mocked, payload)
    async with make_client(transport=mocked.transport) as client:
        with pytest.raises(DecodeError):
            await client.list_service_instances("cn-shanghai", "foo")


XML_THROTTLE = b"""\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <RequestId>X-1</RequestId>
  <HostId>pai-eas.cn-shanghai.aliyuncs.com</HostId>
  <Code>Throttling.User</Code>
  <Message><![CDATA[Request was denied
    due to user flow control & more.]]></Message>
</Error>"""


@pytest.mark.asyncio
async def test_an_xml_error_is_read_like_a_json_one() -> None:
    mocked = Scripted()
    reply(mocked, status=400, body=XML_THROTTLE, content_type="text/xml;charset=utf-8")
    reply(mocked, status=403, body=b"<Error><Code>Forbidden.RAM</Code><Message>no &amp; no</Message></Error>")
    async with make_client(transport=mocked.transport) as client:
        with pytest.raises(ThrottledError) as throttled:
            await client.list_service_instances("cn-shanghai", "foo")
        with pytest.raises(AuthError) as refused:
            await client.list_service_instances("cn-shanghai", "foo")
    error = throttled.value
    assert (error.status, error.code, error.request_id) == (400, "Throttling.User", "X-1")
    assert error.message == "Request was denied due to user flow control & more."
    assert (refused.value.code, refused.value.message) == ("Forbidden.RAM", "no & no")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"<?xml version='1.0'?><Error><Message>busy</Message></Error>",
        b"<html><body><Code>X</Code></body></html>",
    ],
    ids=["XML without a code", "HTML"],
)
async def test_other_markup_is_still_shown_as_a_snippet(body: bytes) -> None:
    mocked = Scripted()
    reply(mocked, status=400, body=body, content_type="text/html")
    async with make_client(transport=mocked.transport) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_service_instances("cn-shanghai", "foo")
    assert caught.value.code is None
    assert "HTTP 400 with a non-JSON body" in caught.value.message


NOW = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "server_date", "expected"),
    [
        ("7", None, 7000),
        (" 120 ", None, 120_000),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("٣", None, None),  # a digit, but not an ASCII one
        ("Sun, 06 Dec 2026 08:00:30 GMT", None, 30_000),
        ("Sun, 06 Dec 2026 08:00:30 GMT", "Sun, 06 Dec 2026 08:00:20 GMT", 10_000),  # server clock
        ("Sun, 06 Dec 2026 07:59:00 GMT", None, None),  # already past
        (None, None, None),
    ],
)
def test_standard_retry_after(value: str | None, server_date: str | None, expected: int | None) -> None:
    assert standard_retry_after_ms(value, server_date, NOW) == expected


@pytest.mark.asyncio
async def test_retry_after_is_read_on_429_and_503_only_and_x_acs_retry_after_wins() -> None:
    mocked = Scripted()
    reply(mocked, status=503, body=b"", headers={"Retry-After": "3"})
    reply(mocked, status=429, body=b"", headers={"Retry-After": "3", "x-acs-retry-after": "1500"})
    reply(mocked, status=500, body=b"", headers={"Retry-After": "3"})
    async with make_client(transport=mocked.transport) as client:
        errors = []
        for _ in range(3):
            with pytest.raises(ApiError) as caught:
                await client.list_service_instances("cn-shanghai", "foo")
            errors.append(caught.value)
    assert [(type(e), e.retry_after_ms) for e in errors] == [
        (ThrottledError, 3000),
        (ThrottledError, 1500),
        (ServerError, None),
    ]


@pytest.mark.asyncio
async def test_a_redirect_names_its_target_redacted_or_says_it_had_none() -> None:
    mocked = Scripted()
    reply(
        mocked, status=301, body=b"<html>Moved</html>", headers={"Location": f"https://x.example/?k={SECRET}"}
    )
    reply(mocked, status=302, body=b"")
    async with make_client(transport=mocked.transport) as client:
        messages = []
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                await client.list_service_instances("cn-shanghai", "foo")
            messages.append(caught.value.message)
    assert messages[0].startswith("HTTP 301 redirect to https://x.example/?k=***: not followed")
    assert messages[1].startswith("HTTP 302 redirect (no Location): not followed")


def _regions_transport(region_ids: list[str]) -> MockTransport:
    def answer(request: Request) -> Response:
        if request.url.endswith("/api/v2/regions"):
            regions = [{"RegionId": region, "RegionName": region.upper()} for region in region_ids]
            return json_response({"RequestId": "R", "Regions": regions})
        if "/instances" in request.url:
            page = {"RequestId": "R", "TotalCount": 1, "PageNumber": 1, "PageSize": 100}
            return json_response({**page, "Instances": [{"InstanceName": "i-1"}]})
        page = {"RequestId": "R", "TotalCount": 1, "PageNumber": 1, "PageSize": 100}
        return json_response({**page, "Services": [{"ServiceName": "svc", "TotalInstance": 1}]})

    return MockTransport(answer)


@pytest.mark.asyncio
async def test_a_region_listed_twice_is_scanned_once() -> None:
    """DescribeRegions naming a region twice: each instance is still written once, scan complete."""
    transport = _regions_transport(["cn-hangzhou", "cn-shanghai", "cn-hangzhou"])
    async with Scanner(credentials=StaticCredentials("id", "secret"), transport=transport) as scanner:
        stream = scanner.scan()
        records = [record async for record in stream]
    assert sorted(record["ClusterId"] for record in records) == ["cn-hangzhou", "cn-shanghai"]
    assert stream.summary.complete


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["CN_HANGZHOU", "cn-hangzhou/../x", "cn-hangzhou "])
async def test_a_region_id_that_is_none_fails_the_region_listing_by_name(bad: str) -> None:
    """Not a region id (no endpoint can be made of it): the scan fails at once naming it, not with an
    exception group from inside the scan."""
    transport = _regions_transport(["cn-hangzhou", bad])
    credentials = StaticCredentials("id", "secret")
    async with Scanner(credentials=credentials, transport=transport, clock=FakeClock()) as scanner:
        stream = scanner.scan()
        with pytest.raises(ScanFailedError) as caught:
            _ = [record async for record in stream]
    assert "DescribeRegions" in str(caught.value)
    assert repr(bad) in str(caught.value)
