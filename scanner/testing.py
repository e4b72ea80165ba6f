"""Helpers for testing code that uses eas-fleet-scanner (and for our own tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio.lowlevel

__all__ = ["EPOCH", "FakeClock"]

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
