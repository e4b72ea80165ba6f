"""The driver without Ray: fake in-process workers that finish, fail, die and come back."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
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


# --- several units in flight on a worker (units_per_worker) ----------------------------------------


class SlotWorker:
    """Runs several units at once; records how many it had in flight. ``die_at``: when it first
    holds that many units, its process 'dies': every unit in flight on it ends with WorkerLost."""

    def __init__(
        self, index: int, *, delays: dict[str, float], die_at: int | None = None, start_delay: float = 0.0
    ) -> None:
        self.index = index
        self.delays = delays
        self.die_at = die_at
        self.start_delay = start_delay
        self.pid = 2000 + index
        self.in_flight: set[str] = set()
        self.peak = 0
        self.ran: list[tuple[str, int]] = []
        self.lost_units: set[str] = set()
        self._died = anyio.Event()

    async def start(self) -> WorkerInfo:
        await anyio.lowlevel.checkpoint()  # a real worker answers later: the other may be up first
        await anyio.sleep(self.start_delay)
        if self._died.is_set():  # restarted
            self._died = anyio.Event()
        return WorkerInfo(self.index, self.pid, "here")

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        self.ran.append((unit.region, attempt))
        self.in_flight.add(unit.region)
        self.peak = max(self.peak, len(self.in_flight))
        try:
            if self.die_at is not None and len(self.in_flight) >= self.die_at:
                self.die_at = None
                self.lost_units = set(self.in_flight)
                self.pid += 100  # restarted: a new process
                self._died.set()
                raise WorkerLost("process died")
            with anyio.move_on_after(self.delays[unit.region]) as waited:
                await self._died.wait()
            if not waited.cancelled_caught:  # it died while this unit ran on it
                raise WorkerLost("process died")
        finally:
            self.in_flight.discard(unit.region)
        return UnitReport(
            unit=unit,
            status="complete",
            records=unit.size or 0,
            worker=WorkerInfo(self.index, self.pid, "here"),
            attempt=attempt,
        )

    async def stop(self) -> None:
        return None


SIZES = {f"r{i}": size for i, size in enumerate([50, 900, 300, 10, 700, 80, 600, 20, 400, 100])}


@pytest.mark.asyncio
async def test_each_worker_runs_up_to_its_slots_biggest_first_every_unit_once() -> None:
    delays = {region: 0.02 + (size % 7) * 0.005 for region, size in SIZES.items()}
    workers = [SlotWorker(0, delays=delays), SlotWorker(1, delays=delays)]
    events: list[DriverEvent] = []
    in_flight: dict[int, int] = {0: 0, 1: 0}
    most: dict[int, int] = {0: 0, 1: 0}

    def on_event(event: DriverEvent) -> None:
        events.append(event)
        if isinstance(event, UnitStarted):
            in_flight[event.worker.index] += 1
            most[event.worker.index] = max(most[event.worker.index], in_flight[event.worker.index])
        elif isinstance(event, UnitFinished):
            assert event.report.worker is not None
            in_flight[event.report.worker.index] -= 1

    work = units(*SIZES, sizes=SIZES)
    reports = await drive(work, workers, give_up=give_up, on_event=on_event, units_per_worker=3)

    assert most == {0: 3, 1: 3}  # the driver never had more than 3 on a worker, and filled them
    assert [w.peak for w in workers] == [3, 3]  # nor did the workers see more
    started = [e.unit.region for e in events if isinstance(e, UnitStarted)]
    assert started == sorted(SIZES, key=lambda region: -SIZES[region])  # handed out biggest first
    first = [e.worker.index for e in events if isinstance(e, UnitStarted)][:6]
    assert first == [0, 1, 0, 1, 0, 1]  # the biggest alternate between the workers
    assert sorted(r.unit.region for r in reports) == sorted(SIZES)  # every unit reported once
    assert sorted(region for w in workers for region, _ in w.ran) == sorted(SIZES)  # and run once
    assert all(r.complete and r.attempt == 1 for r in reports)
    assert not [e for e in events if isinstance(e, UnitRetried)]


@pytest.mark.asyncio
async def test_the_units_in_flight_on_a_lost_worker_all_run_again_once_elsewhere() -> None:
    delays = dict.fromkeys(SIZES, 0.05)
    workers = [SlotWorker(0, delays=delays, die_at=3), SlotWorker(1, delays=delays)]
    events: list[DriverEvent] = []
    reports = await drive(
        units(*SIZES, sizes=SIZES), workers, give_up=give_up, on_event=events.append, units_per_worker=3
    )
    lost = workers[0].lost_units
    assert len(lost) == 3  # it died with 3 units in flight
    retried = [e for e in events if isinstance(e, UnitRetried)]
    assert sorted(e.unit.region for e in retried) == sorted(lost)  # each of them retried, once
    assert all(e.worker.index == 0 and e.attempt == 1 for e in retried)
    by_region = {r.unit.region: r for r in reports}
    assert sorted(by_region) == sorted(SIZES)
    assert len(reports) == len(SIZES)  # every unit ended once
    for region in lost:
        again = by_region[region]
        assert again.complete
        assert again.attempt == 2
        assert again.worker is not None
        assert again.worker.index == 1  # on the other worker
    ran = [run for w in workers for run in w.ran]
    assert sorted(ran) == sorted([(region, 1) for region in SIZES] + [(region, 2) for region in lost])
    assert all(r.attempt == 1 for region, r in by_region.items() if region not in lost)
    summary = summarize(reports, planned=units(*SIZES, sizes=SIZES), duration_s=1.0, cancelled=False)
    assert summary.complete
    assert sorted(u["region"] for u in summary.to_dict()["units"]["retried"]) == sorted(lost)


@pytest.mark.asyncio
async def test_fewer_units_than_slots_are_shared_evenly() -> None:
    delays = dict.fromkeys(SIZES, 0.05)
    workers = [SlotWorker(0, delays=delays), SlotWorker(1, delays=delays)]
    work = units(*list(SIZES)[:6])  # sizes unknown: each unit weighs the same
    reports = await drive(work, workers, give_up=give_up, units_per_worker=16)
    assert [w.peak for w in workers] == [3, 3]  # not 6 on whichever worker was up first
    assert len(reports) == 6


def _held_records(events: list[DriverEvent], index: int) -> int:
    """The sizes of the units handed to worker ``index`` before the other started any."""
    held = 0
    for event in events:
        if isinstance(event, UnitStarted):
            if event.worker.index != index:
                break
            held += event.unit.size or 0
    return held


@pytest.mark.asyncio
async def test_with_sizes_fewer_units_than_slots_are_shared_by_records() -> None:
    delays = dict.fromkeys(SIZES, 0.05)
    workers = [SlotWorker(0, delays=delays), SlotWorker(1, delays=delays)]
    six = list(SIZES)[:6]  # 900, 700, 300, 80, 50, 10: 2,040 records
    events: list[DriverEvent] = []
    reports = await drive(
        units(*six, sizes=SIZES), workers, give_up=give_up, on_event=events.append, units_per_worker=16
    )
    assert len(reports) == 6
    by_worker: dict[int, list[int]] = {0: [], 1: []}
    for event in events:
        if isinstance(event, UnitStarted):
            by_worker[event.worker.index].append(event.unit.size or 0)
    # Each stops at half the records (1,020) once it holds some: 900 + 300 against 700 + 80 + 50 + 10,
    # not 3 units each (900 + 600-odd on one of them).
    assert sorted(by_worker[0]) == [300, 900]
    assert sorted(by_worker[1]) == [10, 50, 80, 700]


@pytest.mark.asyncio
async def test_the_first_worker_up_takes_half_the_records_not_every_big_unit() -> None:
    delays = dict.fromkeys(SIZES, 0.3)
    workers = [SlotWorker(0, delays=delays), SlotWorker(1, delays=delays, start_delay=0.05)]
    events: list[DriverEvent] = []
    reports = await drive(
        units(*SIZES, sizes=SIZES), workers, give_up=give_up, on_event=events.append, units_per_worker=8
    )
    total = sum(SIZES.values())  # 3,160 records
    # Alone for 0.05 s, worker 0 took 900 and 700 (1,600: it stops once it holds half of 3,160),
    # not the 5 biggest (2,900 records) that an even share of units (5 of 10) would have given it.
    assert _held_records(events, 0) == 900 + 700
    assert _held_records(events, 0) < total / 2 + max(SIZES.values())
    started_on_1 = [e.unit.size for e in events if isinstance(e, UnitStarted) and e.worker.index == 1]
    assert started_on_1[:2] == [600, 400]  # then the next biggest go to worker 1 as it comes up
    assert sorted(r.unit.region for r in reports) == sorted(SIZES)  # every unit once


@pytest.mark.asyncio
async def test_cancelling_stops_every_unit_in_flight_on_every_worker() -> None:
    workers = [FakeWorker(0, delay=10), FakeWorker(1, delay=10)]
    with anyio.move_on_after(0.2):
        await drive(units("a", "b", "c", "d", "e"), workers, give_up=give_up, units_per_worker=2)
    assert sorted(workers[0].cancelled + workers[1].cancelled) == ["a", "b", "c", "d"]
    assert all(w.stopped for w in workers)


@pytest.mark.asyncio
async def test_units_per_worker_must_be_a_positive_integer() -> None:
    with pytest.raises(ScannerError, match="units_per_worker must be a positive integer"):
        await drive(units("a"), [FakeWorker(0)], give_up=give_up, units_per_worker=0)
