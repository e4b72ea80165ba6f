"""STS AssumeRole over loopback: credentials, the error table, redaction, validation."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scanner.client.credentials import Credentials, StaticCredentials
from scanner.client.http import Request, Response
from scanner.client.redact import Redactor
from scanner.client.transport import AiohttpTransport
from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ClockSkewError,
    ConfigError,
    DecodeError,
    NetworkError,
    ServerError,
    ThrottledError,
)
from scanner.org.rpc import STS, RpcClient, classify, redactor_for
from scanner.org.sts import AssumeRoleRequest, StsClient, parse_role_arn, role_arn, token_expired
from scanner.simulator import Simulator
from scanner.testing import FakeClock, MockTransport
from tests.org.conftest import START, Org
from tests.org.server import MANAGEMENT_ACCOUNT, MANAGEMENT_KEY_ID, MANAGEMENT_SECRET

MEMBER = "1234567890123456"


def request(account: str = MEMBER, **kwargs: object) -> AssumeRoleRequest:
    return AssumeRoleRequest(role_arn=role_arn(account, "EasInventoryReader"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_assume_role_returns_the_temporary_credentials(org: Org) -> None:
    creds = await org.sts.assume_role(request())
    key_id, (secret, token, account, expires) = next(iter(org.server.issued.items()))
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (key_id, secret, token)
    assert account == MEMBER
    assert creds.expiration == (START + timedelta(seconds=3600)).timestamp() == expires.timestamp()
    assert creds.provider == f"assume-role:{MEMBER}"
    sent = org.server.requests[0]
    assert "DurationSeconds=3600" in sent.raw_query
    assert "RoleSessionName=eas-fleet-scanner" in sent.raw_query
    assert "ExternalId" not in sent.raw_query
    assert org.sts.calls == 1


@pytest.mark.asyncio
async def test_the_granted_lifetime_may_be_shorter_than_asked(org: Org) -> None:
    org.server.ttl_seconds = 20
    creds = await org.sts.assume_role(request(duration_seconds=7200))
    assert creds.expiration == (START + timedelta(seconds=20)).timestamp()


@pytest.mark.asyncio
async def test_the_external_id_is_sent_when_set(org: Org) -> None:
    org.server.external_ids[MEMBER] = "shared-ext-id"
    with pytest.raises(AuthError) as refused:
        await org.sts.assume_role(request())
    assert refused.value.code == "NoPermission"
    creds = await org.sts.assume_role(request(external_id="shared-ext-id"))
    assert creds.security_token


@pytest.mark.asyncio
async def test_caller_identity_of_the_source_and_of_assumed_credentials(org: Org) -> None:
    me = await org.sts.get_caller_identity()
    assert (me.account_id, me.identity_type) == (MANAGEMENT_ACCOUNT, "RAMUser")
    member_identity = await org.sts.get_caller_identity(await org.sts.assume_role(request()))
    assert (member_identity.account_id, member_identity.identity_type) == (MEMBER, "AssumedRoleUser")


def test_token_expired() -> None:
    assert token_expired(AuthError("x", code="InvalidSecurityToken.Expired"))
    assert not token_expired(AuthError("x", code="InvalidSecurityToken.Mismatch"))
    assert not token_expired(ValueError("InvalidSecurityToken.Expired"))


@pytest.mark.asyncio
async def test_the_temporary_credentials_work_for_a_signed_call(org: Org) -> None:
    creds = await org.sts.assume_role(request())
    rpc = RpcClient(STS, org.http, endpoint=org.base_url, clock=org.clock)
    answer = await rpc.call("GetCallerIdentity", {}, creds)
    assert answer["AccountId"]
    sent = org.server.requests[-1]
    assert sent.header("x-acs-security-token") == creds.security_token
    assert sent.header("x-acs-accesskey-id") == creds.access_key_id
    # An expired token is refused the way the real API does.
    org.clock.advance(3600)
    with pytest.raises(AuthError) as expired:
        await rpc.call("GetCallerIdentity", {}, creds)
    assert expired.value.code == "InvalidSecurityToken.Expired"
    assert token_expired(expired.value)


@pytest.mark.parametrize(
    ("knob", "cls", "code", "status"),
    [
        ("missing", AuthError, "EntityNotExist.Role", 404),
        ("denied", AuthError, "NoPermission", 403),
    ],
)
@pytest.mark.asyncio
async def test_a_role_that_cannot_be_assumed(
    org: Org, knob: str, cls: type[ApiError], code: str, status: int
) -> None:
    (org.server.missing_roles if knob == "missing" else org.server.denied).add(MEMBER)
    with pytest.raises(cls) as caught:
        await org.sts.assume_role(request())
    exc = caught.value
    assert (type(exc), exc.code, exc.status, exc.action) == (cls, code, status, "AssumeRole")
    assert exc.kind == code
    assert f"acs:ram::{MEMBER}:role/EasInventoryReader" in str(exc)
    assert "RequestId=req-err" in str(exc)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "EntityNotExist.Role", AuthError),
        (403, "NoPermission", AuthError),
        (400, "InvalidParameter.RoleSessionName", BadRequestError),
        (400, "InvalidParameter.DurationSeconds", BadRequestError),
        (400, "MissingParameter.RoleArn", BadRequestError),
        (400, "Throttling", ThrottledError),
        (400, "Throttling.User", ThrottledError),
        (429, "Throttling.Api", ThrottledError),
        (400, "InvalidSecurityToken.Expired", AuthError),
        (400, "InvalidSecurityToken.Malformed", AuthError),
        (400, "InvalidSecurityToken.MismatchWithAccessKey", AuthError),
        (400, "MissingSecurityToken", AuthError),
        (400, "SignatureDoesNotMatch", AuthError),
        (404, "InvalidAccessKeyId.NotFound", AuthError),
        (403, "Forbidden.RAM", AuthError),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (502, None, ServerError),
        (400, None, BadRequestError),
    ],
)
def test_the_error_table(status: int, code: str | None, cls: type[ApiError]) -> None:
    assert classify(status, code) is cls


def test_a_retry_after_header_means_throttled_whatever_the_code() -> None:
    assert classify(400, "NoPermission", retry_after=True) is ThrottledError


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [(400, "Throttling.User", ThrottledError), (503, "ServiceUnavailable", ServerError),
     (400, "InvalidParameter.RoleArn", BadRequestError)],
)  # fmt: skip
@pytest.mark.asyncio
async def test_errors_over_the_wire(org: Org, status: int, code: str, cls: type[ApiError]) -> None:
    org.server.assume_faults.append((status, code, "no"))
    with pytest.raises(cls) as caught:
        await org.sts.assume_role(request())
    assert caught.value.code == code


def answering(
    status: int, body: bytes, content_type: str = "application/json", **headers: str
) -> MockTransport:
    """A transport whose every answer is this one."""

    def answer(request: Request) -> Response:
        return Response(status, {"Content-Type": content_type, **headers}, body)

    return MockTransport(answer)


SOURCE = Credentials("LTAI5tSourceKeyAbCdwxyz", "source-secret-0123456789", "source-token-" + "z" * 30)


@pytest.mark.asyncio
async def test_no_secret_or_token_in_errors() -> None:
    leak = (
        f'{{"Code":"NoPermission {SOURCE.access_key_secret}","Message":"key {SOURCE.access_key_id} secret '
        f'{SOURCE.access_key_secret} token {SOURCE.security_token} other LTAI5tSomeoneElse99",'
        '"RequestId":"r1"}'
    ).encode()
    rpc = RpcClient(STS, answering(403, leak), endpoint="https://sts.aliyuncs.com")
    with pytest.raises(AuthError) as caught:
        await rpc.call("AssumeRole", {"RoleArn": role_arn(MEMBER, "R")}, SOURCE)
    text = f"{caught.value} {caught.value!r} {caught.value.code} {caught.value.message}"
    assert SOURCE.access_key_secret not in text
    assert SOURCE.security_token is not None
    assert SOURCE.security_token not in text
    assert SOURCE.access_key_id not in text
    assert "LTAI****wxyz" in text
    assert "LTAI5tSomeoneElse99" not in text
    assert "LTAI****se99" in text
    assert "***" in text


@pytest.mark.asyncio
async def test_an_html_answer_is_described_in_one_line() -> None:
    page = (
        b"<html><head><title>502 Bad Gateway</title></head>\n<body><h1>502   Bad Gateway</h1></body></html>"
    )
    rpc = RpcClient(
        STS, answering(502, page, "text/html; charset=utf-8"), endpoint="https://sts.aliyuncs.com"
    )
    with pytest.raises(ServerError) as caught:
        await rpc.call("AssumeRole", {}, SOURCE)
    assert (
        caught.value.message == 'HTTP 502 with a non-JSON body (text/html): "502 Bad Gateway 502 Bad Gateway"'
    )
    assert caught.value.code is None


@pytest.mark.asyncio
async def test_a_2xx_that_is_not_json_is_a_decode_error() -> None:
    rpc = RpcClient(STS, answering(200, b"<html>ok</html>", "text/html"), endpoint="https://sts.aliyuncs.com")
    with pytest.raises(DecodeError):
        await rpc.call("AssumeRole", {}, SOURCE)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"AccessKeyId": "STS.a", "AccessKeySecret": "tmp-secret-xyz", "SecurityToken": "tmp-token-xyz"},
        {"AccessKeyId": "STS.a", "AccessKeySecret": "tmp-secret-xyz", "SecurityToken": "tmp-token-xyz",
         "Expiration": "tomorrow"},
        {"AccessKeyId": "STS.a", "AccessKeySecret": 5, "SecurityToken": "tmp-token-xyz",
         "Expiration": "2026-12-06T03:00:00Z"},
    ],
)  # fmt: skip
@pytest.mark.asyncio
async def test_a_malformed_answer_names_the_field_not_its_value(credentials: dict[str, object]) -> None:
    import orjson

    body = orjson.dumps({"RequestId": "r", "Credentials": credentials})
    sts = StsClient(
        RpcClient(STS, answering(200, body), endpoint="https://sts.aliyuncs.com"),
        source=StaticCredentials(MANAGEMENT_KEY_ID, MANAGEMENT_SECRET),
    )
    with pytest.raises(DecodeError) as caught:
        await sts.assume_role(request())
    assert "tmp-secret" not in str(caught.value)
    assert "tmp-token" not in str(caught.value)
    assert "Credentials" in str(caught.value)


@pytest.mark.asyncio
async def test_a_network_failure_is_a_network_error_naming_the_action() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AiohttpTransport() as http:
        rpc = RpcClient(STS, http, endpoint=f"http://127.0.0.1:{port}")
        with pytest.raises(NetworkError) as caught:
            await rpc.call("AssumeRole", {}, SOURCE)
    assert caught.value.action == "AssumeRole"


def test_reprs_hold_no_secret() -> None:
    req = request(external_id="very-secret-external-id")
    assert "very-secret-external-id" not in repr(req)
    assert "external_id='set'" not in repr(req)
    assert "external_id=set" in repr(req)
    assert SOURCE.access_key_secret not in repr(SOURCE)
    assert (
        redactor_for(SOURCE)(f"x {SOURCE.access_key_id} LTAI5tAbCdEfwxyz y")
        == "x LTAI****wxyz LTAI****wxyz y"
    )
    assert isinstance(redactor_for(SOURCE), Redactor)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"role_session_name": "x"}, "role session name"),
        ({"role_session_name": "has space"}, "role session name"),
        ({"duration_seconds": 899}, "900-43200"),
        ({"duration_seconds": 43201}, "900-43200"),
        ({"duration_seconds": True}, "900-43200"),
        ({"external_id": "a"}, "external id"),
        ({"external_id": "has space"}, "external id"),
    ],
)
def test_request_validation(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        request(**kwargs)


def test_role_arns() -> None:
    assert role_arn(MEMBER, "ResourceDirectoryAccountAccessRole") == (
        f"acs:ram::{MEMBER}:role/ResourceDirectoryAccountAccessRole"
    )
    assert parse_role_arn(f"acs:ram::{MEMBER}:role/Other") == (MEMBER, "Other")
    for bad in ("acs:ram::abc:role/x", f"acs:ram::{MEMBER}:user/x", "arn:aws:iam::1:role/x", 5):
        with pytest.raises(ConfigError):
            parse_role_arn(bad)
    with pytest.raises(ConfigError):
        role_arn(MEMBER, "bad/name")
    with pytest.raises(ConfigError):
        role_arn("12ab", "Reader")


@pytest.mark.asyncio
async def test_a_refused_timestamp_is_a_clock_skew_error_naming_the_skew() -> None:
    body = b'{"Code":"InvalidTimeStamp.Expired","Message":"Specified time stamp is expired.","RequestId":"r"}'
    server_date = "Sun, 06 Dec 2026 02:20:00 GMT"
    clock = FakeClock(wall_start=datetime(2026, 12, 6, 2, 0, 0, tzinfo=UTC))
    rpc = RpcClient(
        STS, answering(400, body, Date=server_date), endpoint="https://sts.aliyuncs.com", clock=clock
    )
    with pytest.raises(ClockSkewError) as caught:
        await rpc.call("AssumeRole", {}, SOURCE)
    assert caught.value.code == "InvalidTimeStamp.Expired"
    assert caught.value.message == (
        f"the local clock is 20 minutes behind the server's (server Date: {server_date}); "
        "set the system clock (e.g. enable NTP) and run again"
    )


@pytest.mark.asyncio
async def test_the_org_simulators_refusal_of_our_timestamp_names_the_skew_in_minutes() -> None:
    # STS and ResourceManager auth failures carry the server's Date, as EAS's do: without it the
    # client could only say "check the clock", not by how much.
    server_clock = FakeClock(wall_start=START)
    ours = FakeClock(wall_start=START - timedelta(minutes=20))
    simulator = Simulator(preset="org-small", seed=5, auth_clock=server_clock)
    async with simulator as sim, AiohttpTransport() as http:
        assert sim.org is not None
        member = sim.org.members[0].account_id
        sts = StsClient(
            RpcClient(STS, http, endpoint=sim.sts_endpoint, clock=ours, allow_insecure_http=True),
            source=StaticCredentials(sim.access_key_id, sim.access_key_secret),
        )
        arn = role_arn(member, "ResourceDirectoryAccountAccessRole")
        with pytest.raises(ClockSkewError) as caught:
            await sts.assume_role(AssumeRoleRequest(role_arn=arn))
    assert caught.value.code == "InvalidTimeStamp.Expired"
    assert caught.value.action == "AssumeRole"
    assert caught.value.message == (
        f"{arn}: the local clock is 20 minutes behind the server's "
        "(server Date: Sun, 06 Dec 2026 02:00:00 GMT); set the system clock (e.g. enable NTP) and run again"
    )
