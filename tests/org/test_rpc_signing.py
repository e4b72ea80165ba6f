"""Our RPC requests against the official STS and ResourceManager SDKs' (ACS3-HMAC-SHA256).

Golden: ``data/sdk-org-captured.jsonl`` holds what the SDKs sent (async and sync, AK and STS-token
credentials, an ExternalId full of characters the encoders disagree on). Each capture verifies,
and ``sign_rpc`` given the same inputs gives the same ``Authorization`` byte for byte: the same
canonical request (method ``POST``, path ``/``, canonical query, signed headers). Live: the
installed SDKs, driven against the loopback server now, still match; and our own requests send
the canonical query as the wire query.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from scanner.client.credentials import Credentials
from scanner.client.transport import AiohttpTransport
from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, parse_authorization
from scanner.org.rpc import RESOURCE_MANAGER, STS, RpcClient, sign_rpc
from scanner.testing import FakeClock
from tests.org import sdk
from tests.org.server import (
    MANAGEMENT_KEY_ID,
    MANAGEMENT_SECRET,
    OrgServer,
    Recorded,
    member,
    serve_org,
    verify_request,
)

VECTORS = Path(__file__).parent / "data" / "sdk-org-captured.jsonl"


def load() -> list[Recorded]:
    out = []
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        out.append(
            Recorded(
                raw["method"], raw["raw_path"], raw["query_string"], [(k, v) for k, v in raw["headers"]],
                raw["body"].encode(),
            )
        )  # fmt: skip
    return out


GOLDEN = load()


def decoded_params(recorded: Recorded) -> dict[str, str]:
    params = {}
    for pair in filter(None, recorded.raw_query.split("&")):
        key, _, value = pair.partition("=")
        params[unquote_plus(key)] = unquote_plus(value)
    return params


def resign(recorded: Recorded) -> dict[str, str]:
    """``sign_rpc`` given what the SDK signed: its date, nonce, user agent and provider header."""
    header = recorded.header
    token = header("x-acs-security-token")
    signed = sign_rpc(
        host=header("host") or "",
        version=header("x-acs-version") or "",
        action=header("x-acs-action") or "",
        params=decoded_params(recorded),
        credentials=Credentials(MANAGEMENT_KEY_ID, MANAGEMENT_SECRET, token),
        date=header("x-acs-date") or "",
        nonce=header("x-acs-signature-nonce") or "",
        user_agent=header("user-agent") or "",
        extra_headers={"x-acs-credentials-provider": header("x-acs-credentials-provider") or ""},
    )
    return signed.headers


def test_the_golden_file_covers_both_products_both_sdk_paths_and_sts_tokens() -> None:
    actions = [r.action for r in GOLDEN]
    assert actions.count("AssumeRole") == 3
    assert {"ListAccounts", "ListAccountsForParent"} <= set(actions)
    assert any(r.header("x-acs-security-token") for r in GOLDEN)
    assert all(r.method == "POST" and r.raw_path == "/" and r.body == b"" for r in GOLDEN)


@pytest.mark.parametrize("recorded", GOLDEN, ids=lambda r: f"{r.action}-{r.header('x-acs-signature-nonce')}")
def test_each_capture_verifies(recorded: Recorded) -> None:
    date = datetime.strptime(recorded.header("x-acs-date") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    verified = verify_request(
        method=recorded.method,
        raw_path=recorded.raw_path,
        raw_query=recorded.raw_query,
        headers=recorded.headers,
        body=recorded.body,
        secret_for={MANAGEMENT_KEY_ID: MANAGEMENT_SECRET}.get,
        now=date,
    )
    assert verified.action == recorded.action


@pytest.mark.parametrize("recorded", GOLDEN, ids=lambda r: f"{r.action}-{r.header('x-acs-signature-nonce')}")
def test_we_sign_each_capture_byte_for_byte(recorded: Recorded) -> None:
    ours = resign(recorded)
    assert ours["Authorization"] == recorded.header("authorization")
    # The same header values, for every header the SDK signed.
    names = parse_authorization(ours["Authorization"]).signed_headers
    assert names == parse_authorization(recorded.header("authorization") or "").signed_headers
    for name in names:
        assert ours[name] == recorded.header(name), name


def test_the_sts_token_headers_are_signed() -> None:
    with_token = next(r for r in GOLDEN if r.header("x-acs-security-token"))
    names = parse_authorization(with_token.header("authorization") or "").signed_headers
    assert {"x-acs-accesskey-id", "x-acs-security-token"} <= set(names)
    assert resign(with_token)["x-acs-security-token"] == sdk.SDK_TOKEN


def test_the_awkward_external_id_is_canonicalised_as_the_sdk_signs_it() -> None:
    # Async SDK (yarl) and sync SDK (requests) put different bytes on the wire ...
    assume = [r for r in GOLDEN if r.action == "AssumeRole" and "ExternalId" in r.raw_query]
    assert len({r.raw_query for r in assume}) == 2
    # ... for one canonical query, which is what we sign and send.
    (canonical,) = {canonical_query(decoded_params(r)) for r in assume}
    assert "ExternalId=ext%20id%2F%C3%A9%2B%26%3D%2A%27%28%29%21~" in canonical
    assert "RoleArn=acs%3Aram%3A%3A1234567890123456%3Arole%2FEasInventoryReader" in canonical


def test_without_a_token_no_token_headers_and_the_body_hash_is_of_nothing() -> None:
    signed = sign_rpc(
        host="sts.aliyuncs.com", version="2015-04-01", action="AssumeRole", params={"A": "1"},
        credentials=Credentials("LTAI5tSomeKeyId0001", "s3cret"), date="2026-12-06T02:00:00Z",
        nonce="n" * 32, user_agent="ua",
    )  # fmt: skip
    assert "x-acs-security-token" not in signed.headers
    assert "x-acs-accesskey-id" not in signed.headers
    assert signed.headers["x-acs-content-sha256"] == EMPTY_BODY_SHA256
    assert signed.url("https://sts.aliyuncs.com") == "https://sts.aliyuncs.com/?A=1"
    assert "s3cret" not in repr(signed)


@pytest.mark.asyncio
async def test_the_installed_sdks_still_sign_as_we_do_live() -> None:
    server = OrgServer(accounts=[member("1234567890123456")])
    async with serve_org(server) as base_url:
        answer = await sdk.drive_async(base_url)
    assert answer.status_code == 200  # the server verified every SDK request
    assert answer.body.credentials.access_key_id.startswith("STS.")
    assert len(server.requests) == 4
    for recorded in server.requests:
        assert resign(recorded)["Authorization"] == recorded.header("authorization")


@pytest.mark.asyncio
async def test_our_requests_are_accepted_and_their_wire_query_is_the_canonical_one() -> None:
    clock = FakeClock(wall_start=datetime.now(UTC).replace(microsecond=0))
    server = OrgServer(accounts=[member("1234567890123456")])
    source = Credentials(MANAGEMENT_KEY_ID, MANAGEMENT_SECRET, "our-sts-token-xyz")
    params = {"RoleArn": sdk.ROLE_ARN, "RoleSessionName": "eas-fleet-scanner", "DurationSeconds": "3600",
              "ExternalId": sdk.AWKWARD_EXTERNAL_ID}  # fmt: skip
    async with serve_org(server) as base_url, AiohttpTransport() as http:
        sts = RpcClient(STS, http, endpoint=base_url, clock=clock)
        answer = await sts.call("AssumeRole", params, source)
        rm = RpcClient(RESOURCE_MANAGER, http, endpoint=base_url, clock=clock)
        listing = await rm.call("ListAccounts", {"PageNumber": "1", "PageSize": "100"}, source)
    assert answer["Credentials"]["SecurityToken"]
    assert listing["TotalCount"] == 1
    ours = server.requests[0]
    assert (ours.method, ours.raw_path) == ("POST", "/")
    assert ours.raw_query == canonical_query(params)  # sent exactly as signed
    names = set(parse_authorization(ours.header("authorization") or "").signed_headers)
    golden = set(parse_authorization(GOLDEN[2].header("authorization") or "").signed_headers)
    assert names == golden - {"x-acs-credentials-provider"}
    assert ours.header("x-acs-version") == "2015-04-01"
    assert server.requests[1].header("x-acs-version") == "2020-03-31"
