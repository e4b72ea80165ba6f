"""The error table: code and status -> error class, tested as a table."""

from __future__ import annotations

import pytest

from scanner.eas import faults
from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    NotFoundError,
    ServerError,
    ThrottledError,
)

TABLE: list[tuple[int, str | None, bool, type[ApiError]]] = [
    # throttling: by code, by 429, or by any x-acs-retry-after header
    (400, "Throttling", False, ThrottledError),
    (400, "Throttling.User", False, ThrottledError),
    (400, "Throttling.Api", False, ThrottledError),
    (503, "Rejected.Throttling", False, ThrottledError),
    (429, None, False, ThrottledError),
    (429, "TooManyRequests", False, ThrottledError),
    (503, "ServiceUnavailable", True, ThrottledError),
    (400, "InvalidParameter", True, ThrottledError),
    # server-side transient
    (500, "InternalError", False, ServerError),
    (503, "ServiceUnavailable", False, ServerError),
    (400, "ServiceUnavailable", False, ServerError),
    (502, None, False, ServerError),
    (504, "GatewayTimeout", False, ServerError),
    # auth: never retried
    (404, "InvalidAccessKeyId.NotFound", False, AuthError),
    (400, "InvalidAccessKeyId.Inactive", False, AuthError),
    (400, "SignatureDoesNotMatch", False, AuthError),
    (400, "IncompleteSignature", False, AuthError),
    (400, "InvalidSecurityToken.Expired", False, AuthError),
    (400, "InvalidTimeStamp.Expired", False, AuthError),
    (400, "SignatureNonceUsed", False, AuthError),
    (403, "Forbidden.RAM", False, AuthError),
    (403, "Forbidden", False, AuthError),
    (403, None, False, AuthError),
    (401, None, False, AuthError),
    # not found: the target vanished
    (404, "InvalidService.NotFound", False, NotFoundError),
    (400, "Service.NotFound", False, NotFoundError),
    (404, None, False, NotFoundError),
    # any other 4xx
    (400, "InvalidParameter", False, BadRequestError),
    (400, None, False, BadRequestError),
    (409, "Conflict", False, BadRequestError),
]


@pytest.mark.parametrize(("status", "code", "retry_after", "expected"), TABLE)
def test_classify(status: int, code: str | None, retry_after: bool, expected: type) -> None:
    assert faults.classify(status, code, retry_after=retry_after) is expected


def test_api_error_carries_everything() -> None:
    error = faults.api_error(
        status=429, code="Throttling.User", message="slow down", request_id="R1",
        retry_after_ms=1500, region="cn-shanghai", action="ListServiceInstances", service="foo",
    )  # fmt: skip
    assert isinstance(error, ThrottledError)
    assert (error.status, error.code, error.message) == (429, "Throttling.User", "slow down")
    assert (error.request_id, error.retry_after_ms) == ("R1", 1500)
    assert (error.region, error.action, error.service) == ("cn-shanghai", "ListServiceInstances", "foo")
    text = str(error)
    for part in ("ListServiceInstances", "cn-shanghai", "foo", "slow down", "429", "R1"):
        assert part in text


@pytest.mark.parametrize(
    "spec",
    [value for value in vars(faults).values() if isinstance(value, faults.ErrorSpec)],
    ids=lambda spec: spec.code,
)
def test_every_simulator_error_classifies_sensibly(spec: faults.ErrorSpec) -> None:
    cls = faults.classify(spec.status, spec.code)
    body = spec.body("RID")
    assert body == {"RequestId": "RID", "Code": spec.code, "Message": spec.message}
    assert issubclass(cls, ApiError)
    if spec.code.startswith("Throttling"):
        assert cls is ThrottledError
    elif spec.status >= 500:
        assert cls is ServerError
