"""What "deleted" needs: the API's own JSON code naming the service, ending in NotFound."""

from __future__ import annotations

import pytest

from scanner.eas.faults import service_gone
from scanner.errors import NotFoundError, RequestError, ServerError


@pytest.mark.parametrize(
    ("status", "code", "gone"),
    [
        (404, "InvalidService.NotFound", True),
        (404, "ServiceNotFound", True),
        (404, "Service.NotFound", True),
        (400, "InvalidServiceName.NotFound", True),
        (404, "InvalidAction.NotFound", False),
        (404, "InvalidRegionId.NotFound", False),
        (404, None, False),  # an HTML or empty 404: a gateway's, not the API's
        (404, "NotFound", False),
        (404, "InvalidService.NotFoundYet", False),
    ],
)
def test_only_the_apis_service_not_found_code_means_deleted(
    status: int, code: str | None, gone: bool
) -> None:
    error = NotFoundError("x", status=status, code=code)
    assert service_gone(error) is gone


def test_an_error_that_is_not_a_not_found_never_means_deleted() -> None:
    assert not service_gone(ServerError("x", status=500, code="InvalidService.NotFound"))
    assert not service_gone(RequestError("x", code="InvalidService.NotFound"))


def test_a_404_without_the_apis_code_is_named_http404() -> None:
    assert NotFoundError("x", status=404).kind == "HTTP404"
    assert NotFoundError("x", status=404, code="InvalidAction.NotFound").kind == "InvalidAction.NotFound"
    assert ServerError("x", status=502).kind == "ServerError"
