"""The Ray engine on a local cluster, several units in flight on each worker: an exact scan, a killed
worker (every unit it held retried elsewhere), a cancelled scan resumed."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import anyio
import pytest

from scanner.distributed import (
    DriverEvent,
    UnitFinished,
    UnitProgress,
    UnitRetried,
    UnitStarted,
    WorkerGone,
    WorkUnit,
    scan_with_ray,
    scan_with_ray_async,
)
from scanner.scandir import ScanDirectory
from tests.distributed.conftest import ThreadedSim, directory_digest

pytestmark = pytest.mark.usefixtures("ray_cluster")


class InFlight:
    """The units in flight on each worker, from the driver's events."""

    def __init__(self) -> None:
        self.units: dict[int, set[WorkUnit]] = {}
        self.most = 0  # the most units in flight on one worker at once

    def on_event(self, event: DriverEvent) -> None:
        if isinstance(event, UnitStarted):
            held = self.units.setdefault(event.worker.index, set())
            held.add(event.unit)
            self.most = max(self.most, len(held))
        elif isinstance(event, UnitFinished) and event.report.worker is not None:
            self.units[event.report.worker.index].discard(event.report.unit)
        elif isinstance(event, UnitRetried):
            self.units[event.worker.index].discard(event.unit)


def test_two_workers_scan_exactly_the_fleet(sim: ThreadedSim, tmp_path: Path) -> None:
    events: list[DriverEvent] = []
    flight = InFlight()

    def on_event(event: DriverEvent) -> None:
        events.append(event)
        flight.on_event(event)

    out = tmp_path / "scan"
    summary = scan_with_ray(
        sim.config(), out, regions=sim.regions, workers=2, units_per_worker=3, on_event=on_event
    )
    assert summary.complete, summary.to_dict()
    assert flight.most == 2  # 4 units over 2 workers: 2 at once on each, not 3 on the first one up
    expected = sim.digest()
    assert directory_digest(out) == expected
    assert summary.records == expected.count
    document = summary.to_dict()
    assert set(document["regions"]) == set(sim.regions)
    assert document["requests"] > 0
    assert document["units"]["complete"] == len(sim.regions)
    assert sum(w["units"] for w in document["workers"].values()) == len(sim.regions)
    directory = ScanDirectory.open(out)
    assert directory.verify() == []
    status = directory.status()
    assert status["complete"]
    assert status["records"] == expected.count
    finished = [e.report for e in events if isinstance(e, UnitFinished)]
    assert {r.unit.region for r in finished} == set(sim.regions)
    assert sum(r.requests for r in finished) == document["requests"]  # each unit's own counters


def test_a_killed_worker_s_units_in_flight_are_all_retried_on_another_worker(
    sim: ThreadedSim, tmp_path: Path
) -> None:
    sim.set_faults(latency_ms=400)  # a unit takes >= 3 round trips: >= 1.2 s
    killed: dict[int, set[WorkUnit]] = {}
    timers: list[threading.Timer] = []
    events: list[DriverEvent] = []
    flight = InFlight()

    def kill(index: int, pid: int) -> None:
        killed[index] = set(flight.units[index])  # what it holds as it dies
        os.kill(pid, signal.SIGKILL)

    def on_event(event: DriverEvent) -> None:
        events.append(event)
        flight.on_event(event)
        if isinstance(event, UnitStarted) and not timers and len(flight.units[event.worker.index]) == 2:
            # SIGKILL the worker's process while it is inside both of its units.
            timers.append(threading.Timer(0.3, kill, (event.worker.index, event.worker.pid)))
            timers[0].start()

    out = tmp_path / "scan"
    try:
        summary = scan_with_ray(
            sim.config(), out, regions=sim.regions, workers=2, units_per_worker=4, on_event=on_event
        )
    finally:
        sim.set_faults()
    [(index, lost)] = killed.items()
    assert len(lost) >= 2
    retried = [e for e in events if isinstance(e, UnitRetried)]
    assert sorted(e.unit.region for e in retried) == sorted(u.region for u in lost), events
    assert all(e.worker.index == index for e in retried)
    assert not [e for e in events if isinstance(e, WorkerGone)]  # Ray restarted the killed worker
    for unit in lost:
        again = next(r for r in summary.reports if r.unit == unit)
        assert again.attempt == 2
        assert again.worker is not None
        assert again.worker.index != index
    assert len(summary.reports) == len(sim.regions)  # every unit ended once
    assert summary.complete, summary.to_dict()
    assert directory_digest(out) == sim.digest()
    assert ScanDirectory.open(out).verify() == []
    assert sorted(summary.to_dict()["units"]["retried"], key=lambda u: u["region"]) == [
        {"account": None, "region": unit.region, "attempts": 2, "status": "complete"}
        for unit in sorted(lost, key=lambda unit: unit.region)
    ]
    # While the units ran (>= 1.2 s each), the workers reported them page by page, every 0.2 s,
    # several units in one answer.
    ended = {(r.unit, r.attempt): r for r in summary.reports}
    mid_unit = [
        e.live
        for e in events
        if isinstance(e, UnitProgress)
        and (e.live.unit, e.live.attempt) in ended
        and 0 < e.live.statistics.requests < ended[e.live.unit, e.live.attempt].requests
    ]
    assert {live.unit for live in mid_unit} == {unit for unit, _ in ended}


def test_a_cancelled_scan_leaves_the_directory_ready_to_resume(sim: ThreadedSim, tmp_path: Path) -> None:
    sim.set_faults(latency_ms=100)
    out = tmp_path / "scan"
    finished: list[str] = []
    flight = InFlight()
    held_at_cancel: list[int] = []

    async def cancelled_scan() -> None:
        with anyio.CancelScope() as scope:

            def on_event(event: DriverEvent) -> None:
                flight.on_event(event)
                if isinstance(event, UnitFinished) and not finished:
                    finished.append(event.report.unit.region)
                    held_at_cancel.extend(len(units) for units in flight.units.values())
                    scope.cancel()  # Ctrl-C, as the CLI's signal handling delivers it

            # One worker, 3 units at once: the 4th never starts, at least one is cut short.
            await scan_with_ray_async(
                sim.config(), out, regions=sim.regions, workers=1, units_per_worker=3, on_event=on_event
            )
        assert scope.cancelled_caught

    try:
        anyio.run(cancelled_scan)
    finally:
        sim.set_faults()
    assert held_at_cancel == [2]  # the worker was stopped with two units in flight
    directory = ScanDirectory.open(out)
    assert directory.verify() == []
    entries = directory.entries()
    assert 1 <= len(entries) < len(sim.regions)
    assert all(entry.status == "complete" for entry in entries.values())
    assert not list(out.glob("region=*/.*.tmp"))  # the cancelled units discarded their parts

    summary = scan_with_ray(sim.config(), out, regions=sim.regions, workers=2, resume=True)
    assert summary.complete, summary.to_dict()
    assert summary.kept == len(entries)
    assert {r.unit.region for r in summary.reports} == set(sim.regions) - {u.region for u in entries}
    assert directory_digest(out) == sim.digest()
    assert directory.status()["complete"]


def test_the_local_cluster_is_on_loopback() -> None:
    import ray

    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
