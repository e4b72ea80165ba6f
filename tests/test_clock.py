"""SystemClock: the event loop's clock for ``monotonic`` (so loop-level fakes apply), UTC for ``wall``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import anyio
import pytest

from scanner.clock import SystemClock


@pytest.mark.asyncio
async def test_monotonic_is_the_running_loops_time(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: 1234.5)
    assert SystemClock().monotonic() == 1234.5
    assert anyio.current_time() == 1234.5  # what it stands in for


@pytest.mark.asyncio
async def test_monotonic_moves_with_the_loop() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await asyncio.sleep(0.01)
    after = clock.monotonic()
    assert after - before >= 0.009  # the loop may wake a clock tick early
    assert abs(asyncio.get_running_loop().time() - after) < 1.0


def test_monotonic_outside_an_event_loop_fails_as_anyio_does() -> None:
    with pytest.raises(anyio.NoEventLoopError):
        SystemClock().monotonic()


@pytest.mark.asyncio
async def test_wall_is_aware_utc() -> None:
    now = SystemClock().wall()
    assert now.tzinfo is UTC
    assert abs((datetime.now(UTC) - now).total_seconds()) < 60


def test_sleep_runs_on_anyio() -> None:
    async def main() -> float:
        clock = SystemClock()
        start = clock.monotonic()
        await clock.sleep(0.01)
        return clock.monotonic() - start

    assert anyio.run(main) >= 0.01
