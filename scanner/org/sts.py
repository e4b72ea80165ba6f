"""STS ``AssumeRole`` (2015-04-01), async, over ``RpcClient``: temporary credentials of a member.

::

    sts = StsClient(RpcClient(STS, http), source=DefaultCredentials())
    creds = await sts.assume_role(AssumeRoleRequest(role_arn=role_arn("1234567890123456", "Reader"),
                                                    role_session_name="eas-fleet-scanner"))

The answer's ``Expiration`` (UTC, ``%Y-%m-%dT%H:%M:%SZ``) becomes ``Credentials.expiration``
(a unix time); it may be sooner than ``DurationSeconds`` asked for. Errors are the classes of
``scanner.org.rpc.classify``: a missing role (``EntityNotExist.Role``) or a refusal
(``NoPermission``) is an ``AuthError``, ``Throttling*`` a ``ThrottledError``, ``InvalidParameter*``
a ``BadRequestError``; their text never holds a secret or a token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from scanner.client.credentials import Credentials, CredentialsProvider
from scanner.errors import ConfigError, DecodeError, RequestError
from scanner.org.rpc import RpcClient

__all__ = [
    "DEFAULT_DURATION_SECONDS",
    "DEFAULT_ROLE_NAME",
    "DEFAULT_ROLE_SESSION_NAME",
    "MAX_DURATION_SECONDS",
    "MIN_DURATION_SECONDS",
    "AssumeRoleRequest",
    "CallerIdentity",
    "StsClient",
    "parse_role_arn",
    "role_arn",
    "token_expired",
    "validate_account_id",
    "validate_external_id",
    "validate_role_name",
]

DEFAULT_ROLE_NAME: Final = "ResourceDirectoryAccountAccessRole"
DEFAULT_ROLE_SESSION_NAME: Final = "eas-fleet-scanner"
DEFAULT_DURATION_SECONDS: Final = 3600
MIN_DURATION_SECONDS: Final = 900
#: The largest MaxSessionDuration a RAM role can have.
MAX_DURATION_SECONDS: Final = 43200
EXPIRATION_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"

_ACCOUNT_ID = re.compile(r"[0-9]{1,32}")
_ROLE_NAME = re.compile(r"[A-Za-z0-9.@_+=,-]{1,64}")
_SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_ROLE_ARN = re.compile(r"acs:ram::(?P<account>[0-9]{1,32}):role/(?P<role>[A-Za-z0-9.@_+=,/-]{1,128})")


def validate_account_id(account_id: object, *, what: str = "account id") -> str:
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ConfigError(f"invalid {what} {account_id!r}: expected the account's numeric UID as a string")
    return account_id


def validate_role_name(name: object) -> str:
    if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
        raise ConfigError(f"invalid role name {name!r}: 1-64 characters of letters, digits and . @ _ + = , -")
    return name


def validate_external_id(value: object) -> str:
    if not isinstance(value, str) or not _EXTERNAL_ID.fullmatch(value):
        raise ConfigError("invalid external id: 2-1224 characters of letters, digits and _ + = , . @ : / -")
    return value


def role_arn(account_id: str, role_name: str) -> str:
    """``acs:ram::{account_id}:role/{role_name}``."""
    return f"acs:ram::{validate_account_id(account_id)}:role/{validate_role_name(role_name)}"


def parse_role_arn(arn: object) -> tuple[str, str]:
    """``(account_id, role_name)`` of a role ARN; ``ConfigError`` if it is not one."""
    match = _ROLE_ARN.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise ConfigError(f"invalid role ARN {arn!r}: expected acs:ram::ACCOUNT_ID:role/ROLE_NAME")
    return match["account"], match["role"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssumeRoleRequest:
    """The parameters of one ``AssumeRole``; validated on construction (``ConfigError``).

    The repr leaves out the external id (a shared secret of sorts).
    """

    role_arn: str
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    external_id: str | None = None

    def __post_init__(self) -> None:
        parse_role_arn(self.role_arn)
        if not isinstance(self.role_session_name, str) or not _SESSION_NAME.fullmatch(self.role_session_name):
            raise ConfigError(
                f"invalid role session name {self.role_session_name!r}: 2-64 characters of letters, "
                "digits and . @ _ -"
            )
        duration = self.duration_seconds
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not MIN_DURATION_SECONDS <= duration <= MAX_DURATION_SECONDS
        ):
            raise ConfigError(
                f"role duration must be {MIN_DURATION_SECONDS}-{MAX_DURATION_SECONDS} seconds, "
                f"got {duration!r}"
            )
        if self.external_id is not None:
            validate_external_id(self.external_id)

    @property
    def account_id(self) -> str:
        return parse_role_arn(self.role_arn)[0]

    def to_params(self) -> dict[str, str]:
        params = {
            "DurationSeconds": str(self.duration_seconds),
            "RoleArn": self.role_arn,
            "RoleSessionName": self.role_session_name,
        }
        if self.external_id is not None:
            params["ExternalId"] = self.external_id
        return params

    def __repr__(self) -> str:
        return (
            f"AssumeRoleRequest(role_arn={self.role_arn!r}, role_session_name={self.role_session_name!r}, "
            f"duration_seconds={self.duration_seconds}, external_id={'set' if self.external_id else None})"
        )


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who the credentials belong to (STS ``GetCallerIdentity``)."""

    account_id: str
    arn: str = ""
    identity_type: str = ""
    principal_id: str = ""


def token_expired(exc: BaseException) -> bool:
    """Whether a request was refused because its STS token expired (``InvalidSecurityToken.Expired``):
    the caller invalidates the credentials and retries once with fresh ones."""
    return isinstance(exc, RequestError) and (exc.code or "").startswith("InvalidSecurityToken.Expired")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _parse_expiration(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, EXPIRATION_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class StsClient:
    """``AssumeRole`` with the caller's (source) credentials; one request per call, no retries."""

    ACTION: Final = "AssumeRole"

    def __init__(self, rpc: RpcClient, *, source: CredentialsProvider) -> None:
        self._rpc = rpc
        self._source = source
        self.calls = 0

    async def assume_role(self, request: AssumeRoleRequest) -> Credentials:
        source = await self._source.get_credentials()
        self.calls += 1
        try:
            data = await self._rpc.call(self.ACTION, request.to_params(), source)
        except RequestError as exc:
            exc.message = f"{request.role_arn}: {exc.message}"
            raise
        return self._decode(data, request)

    async def get_caller_identity(self, credentials: Credentials | None = None) -> CallerIdentity:
        """The account of ``credentials`` (default: the source's), e.g. the management account."""
        creds = credentials if credentials is not None else await self._source.get_credentials()
        data = await self._rpc.call("GetCallerIdentity", {}, creds)
        account_id = data.get("AccountId")
        if not isinstance(account_id, str) or not account_id.isdigit():
            raise DecodeError(
                "unexpected GetCallerIdentity answer: no numeric AccountId", action="GetCallerIdentity"
            )
        return CallerIdentity(
            account_id=account_id,
            arn=_text(data.get("Arn")),
            identity_type=_text(data.get("IdentityType")),
            principal_id=_text(data.get("PrincipalId")),
        )

    def _decode(self, data: dict[str, Any], request: AssumeRoleRequest) -> Credentials:
        creds = data.get("Credentials")
        request_id = data.get("RequestId") if isinstance(data.get("RequestId"), str) else None

        def fail(problem: str) -> DecodeError:
            # Names fields only: the body holds the secret and token.
            return DecodeError(
                f"unexpected AssumeRole answer for {request.role_arn}: {problem}",
                action=self.ACTION,
                request_id=request_id,
            )

        if not isinstance(creds, dict):
            raise fail("no Credentials object")
        fields = {}
        for name in ("AccessKeyId", "AccessKeySecret", "SecurityToken"):
            value = creds.get(name)
            if not isinstance(value, str) or not value:
                raise fail(f"Credentials.{name} is missing or not a string")
            fields[name] = value
        expiration = _parse_expiration(creds.get("Expiration"))
        if expiration is None:
            raise fail(f"Credentials.Expiration is not {EXPIRATION_FORMAT}")
        return Credentials(
            access_key_id=fields["AccessKeyId"],
            access_key_secret=fields["AccessKeySecret"],
            security_token=fields["SecurityToken"],
            expiration=expiration,
            provider=f"assume-role:{request.account_id}",
        )

    def __repr__(self) -> str:
        return f"StsClient({self._rpc!r}, calls={self.calls})"
