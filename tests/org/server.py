"""A tiny STS + ResourceManager server for tests: RPC over ACS3, verified like the real APIs.

One aiohttp app answers both products (by ``x-acs-action``) on one loopback port. It checks
every request's signature with ``scanner.eas.signing.verify`` (the verifier the EAS captures
prove), that temporary keys send their token, and that ``x-acs-version`` is the product's. It
records every request as received (raw path and query, every header), so tests can compare
what the official SDKs send with what we send.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from scanner.eas.signing import SignatureError, VerifiedRequest, verify
from tests.loopback import serve_app

MANAGEMENT_KEY_ID = "LTAI5tManagementKey01"
MANAGEMENT_SECRET = "management-secret-0123456789"
MANAGEMENT_ACCOUNT = "1000000000000001"

VERSIONS = {
    "AssumeRole": "2015-04-01",
    "GetCallerIdentity": "2015-04-01",
    "ListAccounts": "2020-03-31",
    "ListAccountsForParent": "2020-03-31",
}


#: How far a request's x-acs-date may be from the server's clock (the real APIs: 15 minutes).
MAX_SKEW = timedelta(minutes=15)
_VERIFY_CHECKS_THE_DATE = "now" in inspect.signature(verify).parameters


def verify_request(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime,
) -> VerifiedRequest:
    """``scanner.eas.signing.verify`` plus the date window, whichever version of it is here
    (the window moved from the verifier to the simulator's acceptance policy)."""
    kwargs: dict[str, Any] = {
        "method": method, "raw_path": raw_path, "raw_query": raw_query, "headers": headers, "body": body,
        "secret_for": secret_for,
    }  # fmt: skip
    if _VERIFY_CHECKS_THE_DATE:
        return verify(**kwargs, now=now)
    verified = verify(**kwargs)
    if abs(now - verified.date) > MAX_SKEW:
        raise SignatureError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    return verified


@dataclass
class Recorded:
    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def action(self) -> str | None:
        return self.header("x-acs-action")


def member(
    account_id: str, status: str = "CreateSuccess", folder: str = "fd-root", **extra: Any
) -> dict[str, Any]:
    return {
        "AccountId": account_id,
        "DisplayName": f"member-{account_id[-4:]}",
        "FolderId": folder,
        "Status": status,
        "Type": "ResourceAccount",
        "JoinMethod": "created",
        **extra,
    }


@dataclass
class OrgServer:
    """Knobs are plain attributes; tests change them between calls."""

    accounts: list[dict[str, Any]] = field(default_factory=list)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    page_size_cap: int = 100
    #: TotalCount to answer instead of the true one.
    total_count: Any = None
    missing_roles: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    external_ids: dict[str, str] = field(default_factory=dict)
    #: Token lifetime granted, when shorter than asked.
    ttl_seconds: int | None = None
    #: Answer the next N AssumeRole calls with this (status, code, message) and no credentials.
    assume_faults: list[tuple[int, str, str]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    assumed: Counter[str] = field(default_factory=Counter)
    #: access key id -> (secret, token, account id, expires at)
    issued: dict[str, tuple[str, str, str, datetime]] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def secret_for(self, key_id: str) -> str | None:
        if key_id == MANAGEMENT_KEY_ID:
            return MANAGEMENT_SECRET
        issued = self.issued.get(key_id)
        return issued[0] if issued else None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    @staticmethod
    def error(status: int, code: str, message: str, **headers: str) -> web.Response:
        return web.json_response(
            {"RequestId": "req-err", "Code": code, "Message": message}, status=status, headers=headers
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path, _, raw_query = request.raw_path.partition("?")
        headers = [(k.decode("latin-1"), v.decode("utf-8")) for k, v in request.raw_headers]
        recorded = Recorded(request.method, raw_path, raw_query, headers, body)
        self.requests.append(recorded)
        try:
            verified = verify_request(
                method=request.method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body,
                secret_for=self.secret_for,
                now=self.now(),
            )
        except SignatureError as exc:
            return self.error(exc.status, exc.code, exc.message)
        issued = self.issued.get(verified.access_key_id)
        if issued is not None:
            if verified.security_token != issued[1]:
                return self.error(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken is invalid.")
            if self.now() >= issued[3]:
                return self.error(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        action = verified.action or ""
        if action not in VERSIONS:
            return self.error(404, "InvalidAction.NotFound", f"Specified api is not found: {action}")
        if recorded.header("x-acs-version") != VERSIONS[action]:
            return self.error(400, "InvalidVersion", "Specified parameter Version is not valid.")
        params = dict(request.query)
        if action == "AssumeRole":
            return self.assume_role(params)
        if action == "GetCallerIdentity":
            issued_to = self.issued.get(verified.access_key_id)
            account = issued_to[2] if issued_to else MANAGEMENT_ACCOUNT
            return web.json_response(
                {
                    "RequestId": "req",
                    "AccountId": account,
                    "Arn": f"acs:ram::{account}:user/scanner"
                    if not issued_to
                    else f"acs:ram::{account}:assumed-role/x",
                    "IdentityType": "RAMUser" if not issued_to else "AssumedRoleUser",
                    "PrincipalId": "200000000000001",
                }
            )
        return self.list_accounts(
            params, folder=params.get("ParentFolderId") if action.endswith("Parent") else None
        )

    def assume_role(self, params: dict[str, str]) -> web.Response:
        arn = params.get("RoleArn", "")
        if not arn.startswith("acs:ram::") or ":role/" not in arn:
            return self.error(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
        account = arn.removeprefix("acs:ram::").split(":", 1)[0]
        if self.assume_faults:
            status, code, message = self.assume_faults.pop(0)
            return self.error(status, code, message)
        if account in self.missing_roles:
            return self.error(404, "EntityNotExist.Role", f"The role not exists: {arn}.")
        if account in self.denied:
            return self.error(403, "NoPermission", f"You are not authorized to do this action. Role: {arn}")
        wanted = self.external_ids.get(account)
        if wanted is not None and params.get("ExternalId") != wanted:
            return self.error(403, "NoPermission", "You are not authorized to do this action (ExternalId).")
        duration = int(params.get("DurationSeconds", "3600"))
        if not 900 <= duration <= 43200:
            return self.error(400, "InvalidParameter.DurationSeconds", "DurationSeconds is out of range.")
        lifetime = min(duration, self.ttl_seconds) if self.ttl_seconds else duration
        serial = next(self._serial)
        key_id = f"STS.NT{account}x{serial:06d}"
        secret = f"tmp-secret-{account}-{serial}"
        token = f"tmp-token-{account}-{serial}-" + "t" * 40
        expires = self.now().replace(microsecond=0) + timedelta(seconds=lifetime)
        self.issued[key_id] = (secret, token, account, expires)
        self.assumed[account] += 1
        return web.json_response(
            {
                "RequestId": f"req-{serial}",
                "AssumedRoleUser": {
                    "Arn": arn,
                    "AssumedRoleId": f"3{serial:05d}:{params.get('RoleSessionName')}",
                },
                "Credentials": {
                    "AccessKeyId": key_id,
                    "AccessKeySecret": secret,
                    "SecurityToken": token,
                    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            }
        )

    def list_accounts(self, params: dict[str, str], folder: str | None) -> web.Response:
        try:
            number = int(params.get("PageNumber", "1"))
            size = int(params.get("PageSize", "10"))
        except ValueError:
            return self.error(400, "InvalidParameter", "PageNumber and PageSize must be integers.")
        if number < 1 or not 1 <= size <= 100:
            return self.error(400, "InvalidParameter.PageSize", "PageSize must be from 1 to 100.")
        size = min(size, self.page_size_cap)
        members = [a for a in self.accounts if folder is None or a.get("FolderId") == folder]
        page = members[(number - 1) * size : number * size]
        total = len(members) if self.total_count is None else self.total_count
        return web.json_response(
            {
                "RequestId": f"req-list-{number}",
                "TotalCount": total,
                "PageNumber": number,
                "PageSize": size,
                "Accounts": {"Account": page},
            }
        )


@contextlib.asynccontextmanager
async def serve_org(server: OrgServer) -> AsyncIterator[str]:
    async with serve_app(server.app()) as base_url:
        yield base_url
