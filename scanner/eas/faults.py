"""The EAS error table: which error code and HTTP status mean what.

One place decides which ``scanner.errors`` class an API error becomes (``classify``), and the
simulator answers with the same codes and statuses (the ``ErrorSpec`` constants), so both sides of
the wire agree. Rules are tried in order; the first that matches wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    NotFoundError,
    RequestError,
    ServerError,
    ThrottledError,
)

__all__ = [
    "CODE_RULES",
    "STATUS_RULES",
    "ErrorSpec",
    "api_error",
    "classify",
    "error_body",
    "service_gone",
]

# (pattern, class): "X" matches the code X exactly, "X*" codes starting with X, "*X" ending with X.
CODE_RULES: Final[tuple[tuple[str, type[ApiError]], ...]] = (
    ("Throttling", ThrottledError),
    ("Throttling.*", ThrottledError),
    ("Rejected.Throttling", ThrottledError),
    ("InvalidAccessKeyId*", AuthError),
    ("SignatureDoesNotMatch", AuthError),
    ("IncompleteSignature", AuthError),
    ("MissingAuthorization", AuthError),
    ("InvalidSecurityToken*", AuthError),
    # A temporary key sent without its token (or a token without its key): the credentials are
    # wrong, and asking again will not help. Not a bad request, though answered with a 400.
    ("MissingSecurityToken", AuthError),
    ("InvalidTimeStamp*", AuthError),
    ("SignatureNonceUsed", AuthError),
    ("Forbidden*", AuthError),
    ("ServiceUnavailable", ServerError),
    ("InternalError", ServerError),
    ("*NotFound", NotFoundError),
)

# (lowest status, highest status, class), tried after the code rules.
STATUS_RULES: Final[tuple[tuple[int, int, type[ApiError]], ...]] = (
    (429, 429, ThrottledError),
    (401, 401, AuthError),
    (403, 403, AuthError),
    (404, 404, NotFoundError),
    (400, 499, BadRequestError),
    (500, 599, ServerError),
)


def _matches(pattern: str, code: str) -> bool:
    if pattern.endswith("*"):
        return code.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return code.endswith(pattern[1:])
    return code == pattern


def classify(
    status: int,
    code: str | None,
    *,
    retry_after: bool = False,
    extra_rules: Sequence[tuple[str, type[ApiError]]] = (),
) -> type[ApiError]:
    """The error class for an error response.

    ``retry_after`` is whether the response carried ``x-acs-retry-after``: the SDK treats any such
    response as throttling, whatever its code, and so do we. ``extra_rules``: code rules of another
    product (STS, ResourceManager), tried before ``CODE_RULES``.
    """
    if retry_after:
        return ThrottledError
    if code:
        for pattern, cls in (*extra_rules, *CODE_RULES):
            if _matches(pattern, code):
                return cls
    for low, high, cls in STATUS_RULES:
        if low <= status <= high:
            return cls
    return ServerError if status >= 500 else BadRequestError


def service_gone(error: RequestError) -> bool:
    """Whether ``error`` is the API's own word that the service does not exist.

    Only a code from the API's JSON error body counts, and only one that names the service and
    ends in ``NotFound`` (``InvalidService.NotFound``, ``ServiceNotFound``, ``Service.NotFound``):
    a 404 from a gateway or proxy (an HTML or empty body, so no code) or one about something else
    (``InvalidAction.NotFound``: a wrong path or API version) says nothing about the service, and
    taking it for a deletion would drop the service's instances from a scan reported complete.

    A predicate, not an error class: ``classify`` maps codes to how an error is *handled* (retried
    or not), and every 404 is handled alike, never retried; whether the service is gone is what
    the engine concludes about the listing, from the error's data.
    """
    code = error.code
    return (
        isinstance(error, NotFoundError)
        and code is not None
        and code.endswith("NotFound")
        and "Service" in code[: -len("NotFound")]
    )


def api_error(
    *,
    status: int,
    code: str | None,
    message: str | None,
    request_id: str | None = None,
    retry_after_ms: int | None = None,
    region: str | None = None,
    action: str | None = None,
    service: str | None = None,
    extra_rules: Sequence[tuple[str, type[ApiError]]] = (),
) -> ApiError:
    """Build the right ``ApiError`` subclass for an error response (``extra_rules``: see ``classify``)."""
    cls = classify(status, code, retry_after=retry_after_ms is not None, extra_rules=extra_rules)
    return cls(
        message or f"HTTP {status} with no error message",
        region=region,
        action=action,
        service=service,
        status=status,
        code=code,
        request_id=request_id,
        retry_after_ms=retry_after_ms,
    )


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """An error the EAS API answers with: its code, HTTP status and usual message."""

    code: str
    status: int
    message: str

    def body(self, request_id: str, message: str | None = None) -> dict[str, Any]:
        return error_body(self.code, message or self.message, request_id)


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The JSON error shape of the EAS API."""
    return {"RequestId": request_id, "Code": code, "Message": message}


INVALID_PARAMETER: Final = ErrorSpec("InvalidParameter", 400, "The specified parameter is invalid.")
SERVICE_NOT_FOUND: Final = ErrorSpec("InvalidService.NotFound", 404, "The specified service does not exist.")
ROUTE_NOT_FOUND: Final = ErrorSpec("InvalidAction.NotFound", 404, "The specified API does not exist.")
THROTTLING: Final = ErrorSpec("Throttling", 429, "Request was denied due to request throttling.")
THROTTLING_USER: Final = ErrorSpec("Throttling.User", 400, "Request was denied due to user flow control.")
INTERNAL_ERROR: Final = ErrorSpec(
    "InternalError", 500, "The request processing has failed due to some unknown error."
)
SERVICE_UNAVAILABLE: Final = ErrorSpec(
    "ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server."
)
FORBIDDEN_RAM: Final = ErrorSpec(
    "Forbidden.RAM",
    403,
    "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
)
INVALID_ACCESS_KEY_ID: Final = ErrorSpec(
    "InvalidAccessKeyId.NotFound", 404, "Specified access key is not found."
)
SIGNATURE_DOES_NOT_MATCH: Final = ErrorSpec(
    "SignatureDoesNotMatch", 400, "Specified signature is not matched with our calculation."
)
INVALID_SECURITY_TOKEN: Final = ErrorSpec(
    "InvalidSecurityToken.MismatchWithAccessKey",
    400,
    "Specified SecurityToken mismatch with the AccessKey.",
)
