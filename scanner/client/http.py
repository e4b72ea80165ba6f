"""The transport seam: one HTTP request in, one response out.

``EasClient`` signs a request and hands it to an ``AsyncTransport``; what comes back is a
``Response`` (status, headers, the whole body) or a ``TransportError``. The default transport is
``scanner.client.transport.AiohttpTransport``; ``scanner.testing.MockTransport`` answers from a
function instead, so tests and library users can script the API's answers without patching
aiohttp (httpx's ``MockTransport`` idea).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["AsyncTransport", "Request", "Response"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. ``url`` is already percent-encoded and goes out byte for byte; ``headers``
    are exactly what was signed (a transport may add only unsigned framing headers)."""

    method: str
    url: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response with its whole body. Header names are case-insensitive."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDictProxy | CIMultiDict):
            object.__setattr__(self, "headers", CIMultiDictProxy(CIMultiDict(self.headers)))

    @property
    def retry_after_ms(self) -> int | None:
        """``x-acs-retry-after``: the server's suggested wait in milliseconds, when valid."""
        value = self.headers.get("x-acs-retry-after")
        if value is None:
            return None
        try:
            millis = int(value.strip())
        except ValueError:
            return None
        return millis if millis > 0 else None

    @property
    def request_id(self) -> str | None:
        """``x-acs-request-id``, when the gateway sent one (useful when the body is not JSON)."""
        return self.headers.get("x-acs-request-id")

    @property
    def date(self) -> str | None:
        """``Date``: the server's clock (RFC 1123), to name a clock skew."""
        return self.headers.get("date")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class AsyncTransport(Protocol):
    """Sends requests. ``EasClient`` enters it on open and calls ``aclose()`` on close.

    ``send`` returns every HTTP answer, whatever its status (the client decides what an error
    status means), and raises a ``scanner.errors.TransportError`` subclass when no usable answer
    came (``RequestTimeout``, ``NetworkError``, ``ResponseTooLargeError``). It must not catch
    cancellation.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def aclose(self) -> None: ...

    async def send(self, request: Request) -> Response: ...
