"""Progress of a distributed scan page by page: workers' live counters, polled by the driver at most
every ``progress_interval`` (never per page or record), added up as a local scan's statistics.

No Ray here: fake workers that list pages, and the real worker body on the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from scanner import Concurrency, Consistency, StaticCredentials
from scanner.distributed import (
    DirectoryRunnerFactory,
    DriverEvent,
    Progress,
    UnitFinished,
    UnitLive,
    UnitProgress,
    UnitReport,
    UnitRetried,
    WorkerInfo,
    WorkerLost,
    WorkerScanConfig,
    WorkerSlot,
    WorkUnit,
    drive,
)
from scanner.distributed.worker import UnitWorker
from scanner.engine.stats import RegionStatistics, ScanStatistics
from scanner.scandir import ScanParams
from scanner.simulator import FaultConfig, FleetSpec, LongTail, Simulator
from tests.distributed.conftest import directory_digest

PAGE = 10  # records a page


def counters(region: str, pages: int, total_pages: int) -> ScanStatistics:
    return ScanStatistics(
        elapsed_s=0.0,
        requests=pages,
        retries=0,
        throttled=0,
        bytes_received=100 * pages,
        records=PAGE * pages,
        failures=0,
        regions={
            region: RegionStatistics(
                services_known=1,
                services_done=int(pages == total_pages),
                instances_known=PAGE * total_pages,
                instances_done=PAGE * pages,
                requests=pages,
                error=None,
            )
        },
    )


def listed(unit: WorkUnit, attempt: int, index: int, pages: int) -> UnitReport:
    """The report of a fake worker ``index`` that listed all ``pages`` pages of ``unit``."""
    final = counters(unit.region, pages, pages)
    return UnitReport(
        unit=unit,
        status="complete",
        records=final.records,
        requests=final.requests,
        worker=WorkerInfo(index, 100 + index, "here"),
        attempt=attempt,
        statistics=final,
    )


class PagingWorker:
    """Lists ``pages`` pages a unit, one every ``page_s``; reports its counters when asked."""

    def __init__(
        self, index: int, *, pages: int = 20, page_s: float = 0.01, die_on: str | None = None
    ) -> None:
        self.index = index
        self.pages = pages
        self.page_s = page_s
        self.die_on = die_on
        self.asked = 0
        self.pages_listed = 0
        self._live: UnitLive | None = None

    async def start(self) -> WorkerInfo:
        return WorkerInfo(self.index, 100 + self.index, "here")

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        for page in range(1, self.pages + 1):
            await anyio.sleep(self.page_s)
            self.pages_listed += 1
            self._live = UnitLive(unit, attempt, counters(unit.region, page, self.pages))
            if unit.region == self.die_on and page == self.pages // 2:
                self.die_on = None
                self._live = None
                raise WorkerLost("process died")
        self._live = None
        return listed(unit, attempt, self.index, self.pages)

    async def progress(self) -> UnitLive | None:
        self.asked += 1
        return self._live

    async def stop(self) -> None:
        return None


async def give_up(unit: WorkUnit, attempt: int, failures: list[dict[str, Any]]) -> UnitReport:
    return UnitReport(unit=unit, status="incomplete", records=0, failures=tuple(failures), attempt=attempt)


@pytest.mark.asyncio
async def test_the_display_moves_page_by_page_and_workers_are_asked_at_most_every_interval() -> None:
    # A page every 5 ms, a question every 100 ms: sleeps that overrun on a busy machine stretch
    # both, and the pages still far outnumber the questions.
    workers = [PagingWorker(0, pages=40, page_s=0.005), PagingWorker(1, pages=40, page_s=0.005)]
    work = [WorkUnit(None, f"r{i}") for i in range(4)]
    progress = Progress(len(work), units=work)
    seen: list[ScanStatistics] = []  # what a display reads, at each report

    def on_event(event: DriverEvent) -> None:
        progress.on_event(event)
        if isinstance(event, UnitProgress):
            seen.append(progress.statistics(1.0))

    started = anyio.current_time()
    await drive(work, workers, give_up=give_up, on_event=on_event, progress_interval=0.1)
    elapsed = anyio.current_time() - started

    # Mid-unit counts reached the display: neither 0 nor a whole unit's records.
    mid_unit = [s.records for s in seen if s.records % (PAGE * 40)]
    assert len(mid_unit) >= 2
    assert [s.instances_done for s in seen] == sorted(s.instances_done for s in seen)
    # Batched by time, not by page: far fewer questions than pages.
    for worker in workers:
        assert worker.asked <= elapsed / 0.1 + len(work)
        assert worker.asked < worker.pages_listed / 2
    final = progress.statistics(2.0)
    assert final.records == 4 * 40 * PAGE
    assert final.instances_done == final.instances_known == 4 * 40 * PAGE
    assert final.requests == 4 * 40
    assert sorted(final.regions) == ["r0", "r1", "r2", "r3"]


@pytest.mark.asyncio
async def test_a_retried_unit_s_lost_counters_are_dropped() -> None:
    worker = PagingWorker(0, pages=20, page_s=0.01, die_on="r0")
    work = [WorkUnit(None, "r0")]
    progress = Progress(1, units=work)
    during_retry: list[int] = []

    def on_event(event: DriverEvent) -> None:
        progress.on_event(event)
        if isinstance(event, UnitRetried):
            during_retry.append(progress.statistics(0.0).records)

    await drive(work, [worker], give_up=give_up, on_event=on_event, progress_interval=0.03)
    assert during_retry == [0]  # the dead attempt's pages no longer count
    assert progress.statistics(1.0).records == 20 * PAGE  # counted once, from the attempt that ended


@pytest.mark.asyncio
async def test_stale_answers_of_another_unit_are_ignored() -> None:
    class Stale(PagingWorker):
        async def progress(self) -> UnitLive | None:
            self.asked += 1
            return UnitLive(WorkUnit(None, "elsewhere"), 1, counters("elsewhere", 1, 1))

    events: list[DriverEvent] = []
    await drive(
        [WorkUnit(None, "r0")], [Stale(0)], give_up=give_up, on_event=events.append, progress_interval=0.02
    )
    assert not [e for e in events if isinstance(e, UnitProgress)]
    assert [e for e in events if isinstance(e, UnitFinished)]


class SlotPagingWorker:
    """Lists several units at once; ``progress()`` answers for all of them in one call."""

    def __init__(self, index: int, *, pages: int, page_s: float) -> None:
        self.index = index
        self.pages = pages
        self.page_s = page_s
        self.asked = 0
        self.pages_listed = 0
        self.lives: dict[tuple[WorkUnit, int], UnitLive] = {}
        self.answers: list[int] = []  # how many units each answer had

    async def start(self) -> WorkerInfo:
        return WorkerInfo(self.index, 100 + self.index, "here")

    async def stop(self) -> None:
        return None

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        for page in range(1, self.pages + 1):
            await anyio.sleep(self.page_s)
            self.pages_listed += 1
            self.lives[unit, attempt] = UnitLive(unit, attempt, counters(unit.region, page, self.pages))
        del self.lives[unit, attempt]
        return listed(unit, attempt, self.index, self.pages)

    async def progress(self) -> tuple[UnitLive, ...]:
        self.asked += 1
        self.answers.append(len(self.lives))
        return tuple(self.lives.values())


@pytest.mark.asyncio
async def test_one_question_a_worker_carries_all_its_units_into_the_display() -> None:
    workers = [SlotPagingWorker(i, pages=40, page_s=0.005) for i in range(2)]
    work = [WorkUnit(None, f"r{i}") for i in range(6)]
    progress = Progress(len(work), units=work)
    seen: list[ScanStatistics] = []
    live_units: list[int] = []  # units with live counters in the display, at each report

    def on_event(event: DriverEvent) -> None:
        progress.on_event(event)
        if isinstance(event, UnitProgress):
            now = progress.statistics(1.0)
            seen.append(now)
            live_units.append(sum(0 < r.instances_done < PAGE * 40 for r in now.regions.values()))

    started = anyio.current_time()
    await drive(work, workers, give_up=give_up, on_event=on_event, progress_interval=0.05, units_per_worker=3)
    elapsed = anyio.current_time() - started

    for worker in workers:
        assert max(worker.answers) == 3  # three units in one answer
        assert worker.asked <= elapsed / 0.05 + 2  # one question an interval, not one per unit
    assert max(live_units) >= 4  # several units of each worker moving at once in the display
    assert [s.instances_done for s in seen] == sorted(s.instances_done for s in seen)
    final = progress.statistics(2.0)
    assert final.records == final.instances_done == final.instances_known == 6 * 40 * PAGE
    assert final.requests == 6 * 40
    assert sorted(final.regions) == [f"r{i}" for i in range(6)]


def test_organisation_progress_counts_accounts_done() -> None:
    work = [WorkUnit("111", "r1"), WorkUnit("111", "r2"), WorkUnit("222", "r1")]
    progress = Progress(3, units=work, accounts=3, accounts_done=1)  # one account failed while planned
    info = WorkerInfo(0, 1, "here")
    for unit in work[:2]:
        stats = counters(unit.region, 1, 1)
        progress.on_event(UnitFinished(UnitReport(unit, "complete", PAGE, worker=info, statistics=stats)))
    now = progress.statistics(1.0)
    assert (now.accounts_done, now.accounts_total) == (2, 3)
    assert now.regions["r1"].instances_done == PAGE  # regions by name, accounts added together


# --- the real worker body: its runner publishes the unit's live counters ---------------------------


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    spec = FleetSpec(regions=2, services_per_region=4, total_instances=400, distribution=LongTail(1.0, 80))
    async with Simulator(spec=spec, seed=5) as simulator:
        yield simulator


@pytest.mark.asyncio
async def test_a_worker_reports_its_units_in_flight_page_by_page(sim: Simulator, tmp_path: Path) -> None:
    sim.set_faults(FaultConfig(latency_ms=50))  # a unit takes a few round trips of pages
    key = StaticCredentials(sim.access_key_id, sim.access_key_secret)
    config = WorkerScanConfig(
        credentials=lambda: key,
        endpoints=dict(sim.endpoints),
        allow_insecure_http=True,
        consistency=Consistency(page_size=10),
        concurrency=Concurrency(pages_per_listing=1),  # a service's pages one after the other
    )
    factory = DirectoryRunnerFactory(config, str(tmp_path), ScanParams(regions=tuple(sim.regions)), "run1")
    worker = UnitWorker(factory, WorkerSlot(index=0, workers=1, assume_role_rate=1.0))
    await worker.start()
    units = {WorkUnit(None, region): attempt for attempt, region in enumerate(sim.regions, start=1)}
    assert await worker.progress() == ()
    seen: dict[WorkUnit, list[int]] = {unit: [] for unit in units}
    together = 0  # answers that had both units
    reports: dict[WorkUnit, UnitReport] = {}

    async def scan(unit: WorkUnit) -> None:
        reports[unit] = await worker.run(unit, units[unit])

    async with anyio.create_task_group() as tg:
        for unit in units:  # both at once, on the worker's one runner
            tg.start_soon(scan, unit)
        while len(reports) < len(units):
            await anyio.sleep(0.02)
            answer = await worker.progress()
            together += len(answer) == 2
            for live in answer:
                assert live.attempt == units[live.unit]  # each unit's own attempt
                seen[live.unit].append(live.statistics.records)
    await worker.close()
    assert await worker.progress() == ()  # nothing running
    assert together >= 2
    for unit, report in reports.items():
        assert report.complete
        assert report.attempt == units[unit]
        assert report.statistics is not None
        assert report.statistics.records == report.records
        assert set(report.statistics.regions) == {unit.region}  # its own counters, not the other's
        assert seen[unit] == sorted(seen[unit])
        assert len({count for count in seen[unit] if 0 < count < report.records}) >= 2  # page by page
    assert sum(report.records for report in reports.values()) == 400
    assert directory_digest(tmp_path) == sim.fleet_digest()
