"""STS (version 2015-04-01) as the simulator serves it: ``AssumeRole`` and ``GetCallerIdentity``.

Checks, in the order the real service shows them (codes from the STS documentation, see
``shared/research/org.md``; statuses ours where it gives none):

- AssumeRole needs the management account's RAM user (a temporary key: 403 ``NoPermission``).
- The AssumeRole quota of the caller's account (``OrgSpec.assume_role_rate``): 400
  ``Throttling.User`` "Request was denied due to user flow control."; then the injected
  faults (``assume_role_error_rate``, ``fail_next_assume_roles``): 503 ``ServiceUnavailable``.
- ``MissingRoleArn`` / ``MissingRoleSessionName`` (400); ``InvalidParameter.RoleArn``,
  ``InvalidParameter.RoleSessionName`` (``[A-Za-z0-9.@_-]``, 2 to 64), ``InvalidParameter.ExternalId``,
  ``InvalidParameter.DurationSeconds`` (900 to the role's maximum session duration),
  ``InvalidParameter.PolicyGrammar`` (a ``Policy`` that is not a JSON object of 1 to 2048
  characters) (400). ``SourceIdentity`` is echoed back.
- A role that does not exist (no such member, a member not in a success status, or the knob):
  404 ``EntityNotExist.Role``. An ``ExternalId`` the role requires, missing or different: 403
  ``NoPermission``.

Temporary credentials are ``STS.``-prefixed keys with a token and an ``Expiration`` (UTC, whole
seconds): the requested ``DurationSeconds`` (default 3600), or ``OrgSpec.token_ttl`` if shorter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from scanner.simulator.org import SUCCESS_STATUSES, Organization
from scanner.simulator.rpc import RpcError, RpcProduct, RpcRequest

__all__ = ["STS_VERSION", "sts_product"]

STS_VERSION: Final = "2015-04-01"
_ROLE_ARN: Final = re.compile(r"acs:ram::(\d{1,20}):role/([^/]{1,64})")
_SESSION_NAME: Final = re.compile(r"[A-Za-z0-9.@_\-]{2,64}")
_EXTERNAL_ID: Final = re.compile(r"[\w+=,.@:/\-]{2,1224}")
_NOT_AUTHORIZED: Final = "You are not authorized to do this action. You should be authorized by RAM."


def sts_product(org: Organization) -> RpcProduct:
    def assume_role(request: RpcRequest) -> dict[str, Any]:
        return _assume_role(org, request)

    def get_caller_identity(request: RpcRequest) -> dict[str, Any]:
        return _caller_identity(org, request)

    return RpcProduct(
        name="Sts",
        version=STS_VERSION,
        host="sts.aliyuncs.com",
        actions={"AssumeRole": assume_role, "GetCallerIdentity": get_caller_identity},
    )


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise RpcError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    return value


def _assume_role(org: Organization, request: RpcRequest) -> dict[str, Any]:
    if org.issued.get(request.access_key_id) is not None:
        raise RpcError(
            403, "NoPermission", f"{_NOT_AUTHORIZED} (temporary credentials cannot assume roles here)"
        )
    wait = org.assume_role_wait()
    if wait:
        raise RpcError(400, "Throttling.User", "Request was denied due to user flow control.")
    if org.assume_role_fault():
        raise RpcError(
            503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
        )
    params = request.params
    role_arn = _required(params, "RoleArn")
    session_name = _required(params, "RoleSessionName")
    match = _ROLE_ARN.fullmatch(role_arn)
    if match is None:
        raise RpcError(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
    if _SESSION_NAME.fullmatch(session_name) is None:
        raise RpcError(
            400, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed."
        )
    external_id = params.get("ExternalId")
    if external_id is not None and _EXTERNAL_ID.fullmatch(external_id) is None:
        raise RpcError(400, "InvalidParameter.ExternalId", "The parameter ExternalId is wrongly formed.")
    policy = params.get("Policy")
    if policy is not None and not _is_policy(policy):
        raise RpcError(
            400, "InvalidParameter.PolicyGrammar", "The parameter Policy has not passed grammar check."
        )
    maximum = org.spec.max_session_duration
    raw_duration = params.get("DurationSeconds", "3600")
    try:
        duration = int(raw_duration)
    except ValueError:
        duration = -1
    if not 900 <= duration <= maximum:
        raise RpcError(
            400,
            "InvalidParameter.DurationSeconds",
            f"The Min/Max value of DurationSeconds is 15min/{_span(maximum)}, got {raw_duration!r}.",
        )
    account_id, role_name = match.groups()
    member = org.by_id.get(account_id)
    # Role names are case-insensitive.
    if (
        member is None
        or member.status not in SUCCESS_STATUSES  # no account to hold the role (yet, or any more)
        or not member.role_exists
        or role_name.lower() != org.spec.role_name.lower()
    ):
        if member is not None:
            member.assume_role_refused += 1
        raise RpcError(404, "EntityNotExist.Role", f"The role not exists: {role_arn}.")
    if member.external_id is not None and external_id != member.external_id:
        member.assume_role_refused += 1
        detail = "requires an ExternalId" if external_id is None else "requires another ExternalId"
        raise RpcError(403, "NoPermission", f"{_NOT_AUTHORIZED} (the role's trust policy {detail})")
    body = org.issue(member, org.spec.role_name, session_name, duration)
    source_identity = params.get("SourceIdentity")
    if source_identity:
        body["SourceIdentity"] = source_identity
    return body


def _is_policy(text: str) -> bool:
    """A session policy: 1 to 2048 characters of JSON object (the API checks its grammar too)."""
    if not 1 <= len(text) <= 2048:
        return False
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def _span(seconds: int) -> str:
    hours = seconds / 3600
    return f"{math.floor(hours)}hr" if hours == math.floor(hours) else f"{seconds}s"


def _caller_identity(org: Organization, request: RpcRequest) -> dict[str, Any]:
    issued = org.issued.get(request.access_key_id)
    if issued is None:
        # The management account's RAM user (every static key the simulator accepts).
        user_id = org.management_user_id
        return {
            "AccountId": org.management_account_id,
            "Arn": f"acs:ram::{org.management_account_id}:user/{org.management_user_name}",
            "IdentityType": "RAMUser",
            "PrincipalId": user_id,
            "UserId": user_id,
        }
    principal = f"{issued.role_id}:{issued.session_name}"
    return {
        "AccountId": issued.account_id,
        "Arn": f"acs:ram::{issued.account_id}:assumed-role/{issued.role_name}/{issued.session_name}",
        "IdentityType": "AssumedRoleUser",
        "PrincipalId": principal,
        "RoleId": issued.role_id,
        "UserId": principal,
    }
