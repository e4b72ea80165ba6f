"""Helpers for testing code that uses eas-fleet-scanner (and for our own tests).

``FakeClock`` makes time deterministic; ``MockTransport`` answers the API's requests from a
function, so a test can script every answer without a server or patching aiohttp::

    def answer(request: Request) -> Response:
        if "/instances" in request.url:
            return json_response({"RequestId": "R", "TotalCount": 1, "Instances": [{"InstanceName": "i-1"}]})
        return json_response({"RequestId": "R", "TotalCount": 1, "Services": [{"ServiceName": "svc"}]})

    transport = MockTransport(answer)
    async with Scanner(credentials=StaticCredentials("id", "secret"), transport=transport) as s:
        stream = s.scan(regions=["cn-hangzhou"])     # no DescribeRegions: the answer has no Regions
        records = [record async for record in stream]
    transport.requests                               # every request, signed, in order
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import anyio.lowlevel
import orjson

from scanner.client.http import Request, Response

__all__ = ["EPOCH", "FakeClock", "MockTransport", "Request", "Response", "json_response"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when slept on or advanced. Records every sleep.

    ``sleep`` advances time at once and yields to the event loop, so retry and rate-limit logic
    runs in microseconds while seeing exactly the delays it asked for.
    """

    def __init__(self, start: float = 0.0, *, wall_start: datetime = EPOCH) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._wall_start = wall_start
        self._start = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self.now - self._start)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r}, sleeps={len(self.sleeps)})"


Handler = Callable[[Request], Response | Awaitable[Response]]


def json_response(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A response whose body is ``payload`` as JSON (``Content-Type: application/json``)."""
    return Response(status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(payload))


class MockTransport:
    """A transport that answers each request with ``handler(request)``, sync or async.

    The handler returns a ``Response``, or raises a ``scanner.errors.TransportError``
    (``NetworkError``, ``RequestTimeout``...) to stand for a failure with no answer. Every request
    is kept in ``requests``, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[Request] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        return None

    async def send(self, request: Request) -> Response:
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()  # a real transport always yields to the event loop
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    def __repr__(self) -> str:
        return f"MockTransport({self._handler!r}, requests={len(self.requests)})"
