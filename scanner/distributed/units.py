"""The unit of distributed work, one (account, region), and what a worker reports about it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from scanner.engine.stats import ScanStatistics
from scanner.scandir import ScanDirectory, Unit

__all__ = ["UnitLive", "UnitReport", "WorkUnit", "WorkerInfo", "order_units", "sizes_from"]

UnitStatus = Literal["complete", "incomplete"]


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One (account, region) to scan; ``size``: an estimate of its records (None: unknown)."""

    account: str | None
    region: str
    size: int | None = None

    @property
    def unit(self) -> Unit:
        return Unit(self.account, self.region)

    def __str__(self) -> str:
        return str(self.unit)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Who ran a unit: the worker's index in the pool, its process and host."""

    index: int
    pid: int
    host: str


@dataclass(frozen=True, slots=True)
class UnitReport:
    """How one unit ended on a worker (or in the driver, when no worker could finish it).

    ``status``: ``complete`` or ``incomplete``, as committed in the unit's scan directory entry.
    ``summary``: the unit's ``ScanSummary.to_dict()`` (``{}`` when no scan ran, e.g. a lost worker).
    ``statistics``: the unit's last live counters (what a progress display shows), when it ran.
    """

    unit: WorkUnit
    status: UnitStatus
    records: int
    requests: int = 0
    failures: tuple[Mapping[str, Any], ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    worker: WorkerInfo | None = None
    attempt: int = 1
    duration_s: float = 0.0
    statistics: ScanStatistics | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"


@dataclass(frozen=True, slots=True)
class UnitLive:
    """The live counters of the unit a worker is scanning (attempt ``attempt``), as it reports them
    while the unit runs: a snapshot of its scan's ``statistics()``, which moves page by page."""

    unit: WorkUnit
    attempt: int
    statistics: ScanStatistics


def order_units(units: Iterable[WorkUnit]) -> list[WorkUnit]:
    """Biggest first (sizes known), then the units of unknown size in the order given; no repeats.

    Handing out the biggest units first keeps one huge account from starting last and leaving the
    other workers idle at the end (longest-processing-time-first scheduling).
    """
    seen: set[Unit] = set()
    unique: list[WorkUnit] = []
    for work in units:
        if work.unit not in seen:
            seen.add(work.unit)
            unique.append(work)
    known = sorted((w for w in unique if w.size is not None), key=lambda w: -(w.size or 0))
    return known + [w for w in unique if w.size is None]


def sizes_from(units: Iterable[WorkUnit], previous: ScanDirectory) -> list[WorkUnit]:
    """``units`` with their sizes taken from an earlier scan directory of the same fleet: the records
    its entry of each unit counted (a unit it has no entry for keeps the size it had).

    Yesterday's scan is a good estimate of today's: with it, the biggest units start first.
    """
    entries = previous.entries()
    sized: list[WorkUnit] = []
    for work in units:
        entry = entries.get(work.unit)
        sized.append(work if entry is None else WorkUnit(work.account, work.region, entry.records))
    return sized
