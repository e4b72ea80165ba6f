"""RPC-style Alibaba Cloud APIs (STS, ResourceManager) signed with ACS3-HMAC-SHA256.

An RPC call differs from an EAS (ROA) call only in its shape: ``POST /``, every parameter in the
query string, no body; the product's version and the action go in ``x-acs-version`` and
``x-acs-action``. Signing is ``scanner.eas.signing.sign``, the recipe golden-tested against the
official SDKs (``tests/org/data/sdk-org-captured.jsonl`` holds what the STS and ResourceManager
SDKs send; ``tests/org/test_rpc_signing.py`` re-signs each capture byte for byte). A temporary
key sends ``x-acs-accesskey-id`` and its token in ``x-acs-security-token``, both signed.

The query goes on the wire exactly as signed (``quote(value, safe="~")``, keys sorted), so a
server that hashes the raw query and one that decodes and re-encodes it agree. Requests go
through the client's transport seam (``scanner.client.http.AsyncTransport``), so an org scan
can share one connection pool between STS, ResourceManager and EAS, and tests can script the
answers with ``scanner.testing.MockTransport``.

Errors are built by ``EasClient``'s own function, ``scanner.client.api.response_error`` (issue
11): every server-derived text is redacted (``scanner.client.redact.Redactor``: the secret and
token in use removed, access key ids masked), a non-JSON answer is described in one line, a refused
timestamp is a ``ClockSkewError`` naming the skew; only the code table differs (``ORG_CODE_RULES``
first, then ``scanner.eas.faults``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from scanner.client.api import response_error
from scanner.client.credentials import Credentials
from scanner.client.http import AsyncTransport, Request
from scanner.client.redact import Redactor
from scanner.client.transport import default_user_agent
from scanner.clock import Clock, SystemClock
from scanner.eas import faults
from scanner.eas.endpoints import Endpoint, parse_base_url
from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, format_date, sign
from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ConfigError,
    DecodeError,
    RequestError,
)

__all__ = [
    "ORG_CODE_RULES",
    "RESOURCE_MANAGER",
    "STS",
    "RpcApi",
    "RpcClient",
    "SignedRpcRequest",
    "classify",
    "redactor_for",
    "sign_rpc",
]

RPC_METHOD: Final = "POST"
RPC_PATH: Final = "/"


@dataclass(frozen=True, slots=True)
class RpcApi:
    """One RPC product: the name errors use, its API version and its default endpoint."""

    name: str
    version: str
    default_endpoint: str


STS: Final = RpcApi("STS", "2015-04-01", "https://sts.aliyuncs.com")
RESOURCE_MANAGER: Final = RpcApi("ResourceManager", "2020-03-31", "https://resourcemanager.aliyuncs.com")


# --- signing (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedRpcRequest:
    """What goes on the wire: ``POST {base_url}/?{query}`` with ``headers`` (Authorization too)."""

    query: str
    headers: dict[str, str]

    def url(self, base_url: str) -> str:
        return f"{base_url}{RPC_PATH}?{self.query}" if self.query else f"{base_url}{RPC_PATH}"

    def __repr__(self) -> str:
        return f"SignedRpcRequest(action={self.headers.get('x-acs-action')!r}, query={self.query!r})"


def sign_rpc(
    *,
    host: str,
    version: str,
    action: str,
    params: Mapping[str, str],
    credentials: Credentials,
    date: str,
    nonce: str,
    user_agent: str,
    extra_headers: Mapping[str, str] | None = None,
) -> SignedRpcRequest:
    """Sign one RPC request. ``params`` are decoded values; ``date`` is an ``x-acs-date``.

    The signed headers are those the SDK signs, less its ``x-acs-credentials-provider`` (it
    only tells the server which SDK provider was used); ``extra_headers`` (lower-case names)
    are signed too, which is how the tests reproduce an SDK request exactly.
    """
    headers = {
        "host": host,
        "x-acs-version": version,
        "x-acs-action": action,
        "user-agent": user_agent,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "accept": "application/json",
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
    }
    if extra_headers:
        headers.update(extra_headers)
    if credentials.security_token is not None:
        headers["x-acs-accesskey-id"] = credentials.access_key_id
        headers["x-acs-security-token"] = credentials.security_token
    headers["Authorization"] = sign(
        method=RPC_METHOD,
        canonical_uri=RPC_PATH,
        params=params,
        headers=headers,
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
    )
    return SignedRpcRequest(query=canonical_query(params), headers=headers)


# --- redaction and classification ---------------------------------------------------------------


def redactor_for(credentials: Credentials) -> Redactor:
    """What to hide in text that answers a request signed with ``credentials``."""
    return Redactor(
        secrets=(credentials.access_key_secret, credentials.security_token),
        key_ids=(credentials.access_key_id,),
    )


#: STS and ResourceManager codes that the EAS table (``scanner.eas.faults``) does not know, tried
#: first. ``(pattern, class)`` as in that table: ``X*`` a prefix, ``*X`` a suffix.
ORG_CODE_RULES: Final[tuple[tuple[str, type[ApiError]], ...]] = (
    # The member has no such role, or the caller may not assume it: a per-account failure.
    ("EntityNotExist.Role", AuthError),
    ("NoPermission*", AuthError),
    ("AccessDenied*", AuthError),
    ("InvalidParameter*", BadRequestError),
    ("MissingParameter*", BadRequestError),
)


def classify(status: int, code: str | None, *, retry_after: bool = False) -> type[ApiError]:
    """The error class of an STS / ResourceManager error answer."""
    return faults.classify(status, code, retry_after=retry_after, extra_rules=ORG_CODE_RULES)


# --- one call ----------------------------------------------------------------------------------


def random_nonce() -> str:
    return os.urandom(16).hex()


class RpcClient:
    """Signed RPC calls to one product at one endpoint, over a transport.

    ``call`` returns the decoded JSON object of a 2xx answer, or raises a ``RequestError`` whose
    ``action`` is the RPC action and whose text is redacted. No retries here: callers own them.
    The transport is the caller's (opened and closed by it), typically the scan's one
    ``AiohttpTransport``.
    """

    def __init__(
        self,
        api: RpcApi,
        transport: AsyncTransport,
        *,
        endpoint: str | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
        user_agent: str | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        if user_agent is not None and (not isinstance(user_agent, str) or not user_agent.strip()):
            raise ConfigError("user_agent must be a non-empty string")
        self.api = api
        self.endpoint: Endpoint = parse_base_url(
            api.name, endpoint or api.default_endpoint, allow_insecure_http=allow_insecure_http
        )
        self._transport = transport
        self._clock: Clock = clock or SystemClock()
        self._nonce = nonce_factory or random_nonce
        self.user_agent = user_agent or default_user_agent()
        self.requests = 0

    def prepare(self, action: str, params: Mapping[str, str], credentials: Credentials) -> SignedRpcRequest:
        """The signed request for ``action`` (exposed for tests and request logs)."""
        return sign_rpc(
            host=self.endpoint.host,
            version=self.api.version,
            action=action,
            params=params,
            credentials=credentials,
            date=format_date(self._clock.wall()),
            nonce=self._nonce(),
            user_agent=self.user_agent,
        )

    async def call(self, action: str, params: Mapping[str, str], credentials: Credentials) -> dict[str, Any]:
        signed = self.prepare(action, params, credentials)
        redact = redactor_for(credentials)
        self.requests += 1
        try:
            response = await self._transport.send(
                Request(RPC_METHOD, signed.url(self.endpoint.base_url), signed.headers)
            )
        except RequestError as exc:  # the transport's errors know nothing of the action
            exc.action = action
            exc.message = redact(exc.message)
            exc.args = (exc.message, *exc.args[1:])
            raise
        if not 200 <= response.status < 300:
            raise response_error(
                response, redact, self._clock.wall(), action=action, extra_rules=ORG_CODE_RULES
            )
        try:
            data = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is not dict:
            what = "not valid JSON" if data is None else "not a JSON object"
            raise DecodeError(
                f"unexpected response: HTTP {response.status} with a body that is {what} "
                f"({len(response.body)} bytes)",
                action=action,
                status=response.status,
                request_id=redact.optional(response.request_id),
            )
        return data

    def __repr__(self) -> str:
        return f"RpcClient({self.api.name} {self.api.version} at {self.endpoint.base_url})"
