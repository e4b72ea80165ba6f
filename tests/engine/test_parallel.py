"""The scheduler's ``Parallel`` for a listing's page workers: concurrency, failure, and its tasks."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from scanner.engine.scheduler import _in_parallel


@pytest.mark.asyncio
async def test_count_workers_run_at_once_and_share_the_work() -> None:
    pending = iter(range(12))
    done: list[int] = []
    running = peak = 0

    async def worker() -> None:
        nonlocal running, peak
        for number in pending:
            running += 1
            peak = max(peak, running)
            await anyio.lowlevel.checkpoint()
            running -= 1
            done.append(number)

    await _in_parallel(3, worker)
    assert sorted(done) == list(range(12))
    assert peak == 3


@pytest.mark.asyncio
async def test_the_first_failure_stops_the_others_and_is_raised_as_itself() -> None:
    never = anyio.Event()
    started = 0
    cancelled = 0

    async def worker() -> None:
        nonlocal started, cancelled
        started += 1
        if started == 2:
            raise LookupError("page 2 failed")
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise

    with anyio.fail_after(5):
        with pytest.raises(LookupError, match="page 2 failed"):
            await _in_parallel(3, worker)
    # Every other worker that started was cancelled (one not yet started may never start).
    assert started >= 2
    assert cancelled == started - 1


@pytest.mark.asyncio
async def test_one_worker_runs_in_the_callers_task_and_so_does_one_of_several() -> None:
    caller = anyio.get_current_task().id
    tasks: list[int] = []

    async def worker() -> None:
        tasks.append(anyio.get_current_task().id)
        await anyio.lowlevel.checkpoint()

    await _in_parallel(1, worker)
    assert tasks == [caller]
    tasks.clear()
    await _in_parallel(4, worker)
    assert len(set(tasks)) == 4
    assert caller in tasks
