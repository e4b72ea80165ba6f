"""The Ray engine on a local cluster: an exact scan, a killed worker, a cancelled scan resumed."""

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
    scan_with_ray,
    scan_with_ray_async,
)
from scanner.scandir import ScanDirectory
from tests.distributed.conftest import ThreadedSim, directory_digest

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_two_workers_scan_exactly_the_fleet(sim: ThreadedSim, tmp_path: Path) -> None:
    events: list[DriverEvent] = []
    out = tmp_path / "scan"
    summary = scan_with_ray(sim.config(), out, regions=sim.regions, workers=2, on_event=events.append)
    assert summary.complete, summary.to_dict()
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


def test_a_killed_worker_s_unit_is_retried_on_another_worker(sim: ThreadedSim, tmp_path: Path) -> None:
    sim.set_faults(latency_ms=400)  # a unit takes >= 3 round trips: >= 1.2 s
    killed: list[int] = []
    events: list[DriverEvent] = []

    def on_event(event: DriverEvent) -> None:
        events.append(event)
        if isinstance(event, UnitStarted) and not killed:
            killed.append(event.worker.index)
            # SIGKILL the worker's process while it is inside its first unit.
            threading.Timer(0.3, os.kill, (event.worker.pid, signal.SIGKILL)).start()

    out = tmp_path / "scan"
    try:
        summary = scan_with_ray(sim.config(), out, regions=sim.regions, workers=2, on_event=on_event)
    finally:
        sim.set_faults()
    retried = [e for e in events if isinstance(e, UnitRetried)]
    assert len(retried) == 1, events
    assert not [e for e in events if isinstance(e, WorkerGone)]  # Ray restarted the killed worker
    assert retried[0].worker.index == killed[0]
    again = next(r for r in summary.reports if r.unit == retried[0].unit)
    assert again.attempt == 2
    assert again.worker is not None
    assert again.worker.index != killed[0]
    assert summary.complete, summary.to_dict()
    assert directory_digest(out) == sim.digest()
    assert ScanDirectory.open(out).verify() == []
    assert summary.to_dict()["units"]["retried"] == [
        {"account": None, "region": again.unit.region, "attempts": 2, "status": "complete"}
    ]
    # While the units ran (>= 1.2 s each), the workers reported them page by page, every 0.2 s.
    ended = {(r.unit, r.attempt): r for r in summary.reports}
    mid_unit = [
        e.live
        for e in events
        if isinstance(e, UnitProgress)
        and (e.live.unit, e.live.attempt) in ended
        and 0 < e.live.statistics.requests < ended[e.live.unit, e.live.attempt].requests
    ]
    assert len(mid_unit) >= len(sim.regions)


def test_a_cancelled_scan_leaves_the_directory_ready_to_resume(sim: ThreadedSim, tmp_path: Path) -> None:
    sim.set_faults(latency_ms=100)
    out = tmp_path / "scan"
    finished: list[str] = []

    async def cancelled_scan() -> None:
        with anyio.CancelScope() as scope:

            def on_event(event: DriverEvent) -> None:
                if isinstance(event, UnitFinished):
                    finished.append(event.report.unit.region)
                    scope.cancel()  # Ctrl-C, as the CLI's signal handling delivers it

            await scan_with_ray_async(sim.config(), out, regions=sim.regions, workers=2, on_event=on_event)
        assert scope.cancelled_caught

    try:
        anyio.run(cancelled_scan)
    finally:
        sim.set_faults()
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
