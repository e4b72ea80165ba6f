"""The driver without Ray: fake in-process workers that finish, fail, die and come back."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from scanner.distributed import (
    DriverEvent,
    Progress,
    UnitFinished,
    UnitReport,
    UnitRetried,
    UnitStarted,
    WorkerGone,
    WorkerInfo,
    WorkerLost,
    WorkUnit,
    drive,
    order_units,
    summarize,
)
from scanner.errors import ScannerError


class FakeWorker:
    """Runs units in-process; ``die_on`` units make it 'die' (WorkerLost) on their first try."""

    def __init__(
        self,
        index: int,
        *,
        die_on: set[str] = frozenset(),  # type: ignore[assignment]
        restarts: int = 5,
        fail_on: set[str] = frozenset(),  # type: ignore[assignment]
        delay: float = 0.0,
    ) -> None:
        self.index = index
        self.die_on = set(die_on)
        self.fail_on = fail_on
        self.restarts = restarts
        self.delay = delay
        self.pid = 1000 + index
        self.ran: list[str] = []
        self.stopped = False
        self.cancelled: list[str] = []

    async def start(self) -> WorkerInfo:
        if self.restarts < 0:
            raise WorkerLost("restarts exhausted")
        return WorkerInfo(self.index, self.pid, "here")

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        self.ran.append(unit.region)
        try:
            await anyio.sleep(self.delay)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(unit.region)
            raise
        if unit.region in self.die_on:
            self.die_on.discard(unit.region)
            self.restarts -= 1
            self.pid += 100
            raise WorkerLost("process died")
        if unit.region in self.fail_on:
            raise RuntimeError("boom")
        return UnitReport(
            unit=unit,
            status="complete",
            records=unit.size or 1,
            requests=2,
            summary={"requests": 2, "regions": {unit.region: {"services": 1, "instances": unit.size or 1}}},
            worker=WorkerInfo(self.index, self.pid, "here"),
            attempt=attempt,
        )

    async def stop(self) -> None:
        self.stopped = True


def units(*regions: str, sizes: dict[str, int] | None = None) -> list[WorkUnit]:
    sizes = sizes or {}
    return [WorkUnit(None, region, sizes.get(region)) for region in regions]


async def give_up(unit: WorkUnit, attempt: int, failures: list[dict[str, Any]]) -> UnitReport:
    return UnitReport(unit=unit, status="incomplete", records=0, failures=tuple(failures), attempt=attempt)


def test_order_units_biggest_first_then_unknown_in_order() -> None:
    work = units("a", "b", "c", "d", "b", sizes={"b": 5, "d": 50})
    assert [u.region for u in order_units(work)] == ["d", "b", "a", "c"]


@pytest.mark.asyncio
async def test_every_unit_once_biggest_first_and_workers_stopped() -> None:
    workers = [FakeWorker(0, delay=0.01), FakeWorker(1, delay=0.01)]
    events: list[DriverEvent] = []
    work = units("r1", "r2", "r3", "r4", "r5", sizes={"r5": 500, "r3": 300})
    reports = await drive(work, workers, give_up=give_up, on_event=events.append)
    assert sorted(r.unit.region for r in reports) == ["r1", "r2", "r3", "r4", "r5"]
    started = [e.unit.region for e in events if isinstance(e, UnitStarted)]
    assert started[:2] == ["r5", "r3"]
    assert all(w.stopped for w in workers)
    assert len(workers[0].ran) >= 1
    assert len(workers[1].ran) >= 1
    summary = summarize(reports, planned=work, duration_s=1.0, cancelled=False)
    assert summary.complete
    assert summary.records == 500 + 300 + 3
    assert summary.to_dict()["requests"] == 10
    assert summary.to_dict()["units"]["complete"] == 5


@pytest.mark.asyncio
async def test_a_lost_worker_s_unit_is_retried_on_another_worker() -> None:
    workers = [FakeWorker(0, die_on={"big"}, delay=0.01), FakeWorker(1, delay=0.01)]
    events: list[DriverEvent] = []
    reports = await drive(
        units("big", "r1", "r2", sizes={"big": 10}), workers, give_up=give_up, on_event=events.append
    )
    big = next(r for r in reports if r.unit.region == "big")
    assert big.complete
    assert big.attempt == 2
    assert big.worker is not None
    assert big.worker.index == 1
    assert any(isinstance(e, UnitRetried) and e.unit.region == "big" for e in events)


@pytest.mark.asyncio
async def test_a_unit_that_keeps_failing_is_given_up_after_max_attempts() -> None:
    workers = [FakeWorker(0, fail_on={"bad"}), FakeWorker(1, fail_on={"bad"})]
    reports = await drive(units("bad", "ok"), workers, give_up=give_up, max_attempts=3)
    bad = next(r for r in reports if r.unit.region == "bad")
    assert bad.status == "incomplete"
    assert bad.attempt == 3
    assert bad.failures[0]["code"] == "WorkerLost"
    assert "gave up after 3 attempts" in bad.failures[0]["message"]
    assert workers[0].ran.count("bad") + workers[1].ran.count("bad") == 3
    summary = summarize(reports, planned=units("bad", "ok"), duration_s=1.0, cancelled=False)
    assert not summary.complete
    assert summary.to_dict()["regions"]["bad"]["complete"] is False


@pytest.mark.asyncio
async def test_when_every_worker_is_gone_the_rest_is_given_up() -> None:
    workers = [FakeWorker(0, die_on={"a"}, restarts=0)]
    events: list[DriverEvent] = []
    reports = await drive(units("a", "b"), workers, give_up=give_up, on_event=events.append)
    assert {r.unit.region: r.status for r in reports} == {"a": "incomplete", "b": "incomplete"}
    assert any(isinstance(e, WorkerGone) for e in events)
    assert all("no worker left" in r.failures[0]["message"] for r in reports)


@pytest.mark.asyncio
async def test_cancelling_the_driver_cancels_the_units_and_stops_every_worker() -> None:
    workers = [FakeWorker(0, delay=10), FakeWorker(1, delay=10)]
    with anyio.move_on_after(0.2):
        await drive(units("a", "b", "c"), workers, give_up=give_up)
    assert sorted(workers[0].cancelled + workers[1].cancelled) == ["a", "b"]
    assert all(w.stopped for w in workers)


@pytest.mark.asyncio
async def test_no_workers_is_an_error() -> None:
    with pytest.raises(ScannerError, match="at least one worker"):
        await drive(units("a"), [], give_up=give_up)


@pytest.mark.asyncio
async def test_finished_events_carry_the_reports() -> None:
    finished: list[UnitReport] = []

    def on_event(event: DriverEvent) -> None:
        if isinstance(event, UnitFinished):
            finished.append(event.report)

    reports = await drive(units("a", "b"), [FakeWorker(0)], give_up=give_up, on_event=on_event)
    assert finished == reports


@pytest.mark.asyncio
async def test_progress_follows_the_events() -> None:
    progress = Progress(planned=3)
    snapshots: list[dict[str, int]] = []

    def on_event(event: DriverEvent) -> None:
        progress.on_event(event)
        snapshots.append(progress.snapshot())

    workers = [FakeWorker(0, die_on={"a"}, fail_on={"c"}), FakeWorker(1, fail_on={"c"})]
    await drive(units("a", "b", "c"), workers, give_up=give_up, max_attempts=2, on_event=on_event)
    final = progress.snapshot()
    assert final["done"] == 3
    assert final["running"] == 0
    assert final["retried"] >= 2
    assert final["records"] == 2
    assert final["failures"] == 1
    assert max(s["running"] for s in snapshots) == 2


@pytest.mark.asyncio
async def test_workers_keep_to_their_accounts_while_there_are_fresh_ones() -> None:
    # Fewer AssumeRole calls: each account's units go to the worker that already has its role.
    work = [WorkUnit(account, region) for account in ("a1", "a2") for region in ("r1", "r2", "r3")]
    workers = [FakeWorker(0, delay=0.01), FakeWorker(1, delay=0.01)]
    reports = await drive(work, workers, give_up=give_up)
    accounts = {
        index: {r.unit.account for r in reports if r.worker and r.worker.index == index} for index in (0, 1)
    }
    assert accounts == {0: {"a1"}, 1: {"a2"}}


@pytest.mark.asyncio
async def test_an_idle_worker_helps_with_a_busy_account_once_no_fresh_one_is_left() -> None:
    work = [WorkUnit("big", f"r{i}", 100 - i) for i in range(4)] + [WorkUnit("small", "r0", 1)]
    workers = [FakeWorker(0, delay=0.05), FakeWorker(1, delay=0.01)]
    reports = await drive(work, workers, give_up=give_up)
    by_worker = {index: [r.unit for r in reports if r.worker and r.worker.index == index] for index in (0, 1)}
    assert WorkUnit("small", "r0", 1) in by_worker[1]
    assert any(unit.account == "big" for unit in by_worker[1])  # it stole work once "small" was done
