"""Time, in one place: everything that reads the clock or sleeps goes through a ``Clock``.

Tests pass ``scanner.testing.FakeClock`` so retry and rate-limit tests run in milliseconds.
"""

from __future__ import annotations

from asyncio import _get_running_loop
from datetime import UTC, datetime
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic clock; only differences mean anything."""
        ...

    def wall(self) -> datetime:
        """The current UTC time (request signing timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep, honouring cancellation."""
        ...


class SystemClock:
    """The real clock. ``monotonic`` is the event loop's clock, so loop-level fakes work too."""

    __slots__ = ()

    def monotonic(self) -> float:
        # The engine reads this a few times per request. On asyncio, ask the running loop
        # directly: it is what anyio.current_time() returns there, without the backend lookup
        # (sniffio, then a dict) it does on every call. Any other backend goes through anyio.
        loop = _get_running_loop()
        if loop is not None:
            return loop.time()
        return anyio.current_time()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
