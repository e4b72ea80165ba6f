"""The summary of a distributed scan, added up from the units' reports.

Its ``to_dict()`` has every key of a local scan's summary (``ScanSummary.to_dict()``, the
``--summary`` JSON), so what reads one reads the other, plus ``units`` (counts, and the units retried
or given up) and ``workers`` (units and records per worker). In a multi-account scan the ``regions``
keys are ``account/region`` and each failure names its ``account``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scanner.distributed.driver import DriverEvent, UnitFinished, UnitRetried, UnitStarted, WorkerGone
from scanner.distributed.units import UnitReport, WorkUnit

__all__ = ["DistributedSummary", "Progress", "summarize"]


@dataclass(frozen=True, slots=True)
class DistributedSummary:
    """How a distributed scan ended; ``reports``: one per unit that ended (in the order they did)."""

    complete: bool
    records: int
    duration_s: float
    cancelled: bool
    reports: tuple[UnitReport, ...]
    #: Units that were to be scanned but never ended (cancelled before their commit).
    not_finished: tuple[WorkUnit, ...]
    #: Units kept from an earlier run of a resumed scan (complete in the directory already).
    kept: int
    kept_records: int
    _document: Mapping[str, Any]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [dict(failure) for failure in self._document["failures"]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: a local summary's keys, plus ``units`` and ``workers``."""
        return dict(self._document)


def summarize(
    reports: Sequence[UnitReport],
    *,
    planned: Iterable[WorkUnit],
    duration_s: float,
    cancelled: bool,
    kept: int = 0,
    kept_records: int = 0,
) -> DistributedSummary:
    """Add up ``reports`` of the ``planned`` units (see the module docstring)."""
    planned = list(planned)
    ended = {report.unit.unit for report in reports}
    not_finished = tuple(unit for unit in planned if unit.unit not in ended)
    regions: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    verdicts: dict[str, int] = {}
    notable: list[dict[str, Any]] = []
    missing: set[str] | None = None
    totals = {"requests": 0, "retries": 0, "throttled": 0, "bytes_received": 0}
    workers: dict[str, dict[str, int]] = {}
    retried: list[dict[str, Any]] = []
    for report in reports:
        unit = report.unit
        summary = report.summary
        name = str(unit)
        for key in totals:
            totals[key] += int(summary.get(key, 0))
        if "requests" not in summary:
            totals["requests"] += report.requests
        region = dict(summary.get("regions", {}).get(unit.region) or {})
        region.setdefault("services", 0)
        region.setdefault("instances", report.records)
        region["complete"] = report.complete
        if not report.complete and not region.get("error"):
            region["error"] = "; ".join(str(f.get("message")) for f in report.failures) or report.status
        region.setdefault("error", None)
        regions[name] = region
        for failure in report.failures:
            entry = dict(failure)
            if unit.account is not None:
                entry.setdefault("account", unit.account)
            failures.append(entry)
        for verdict, count in summary.get("services", {}).items():
            verdicts[verdict] = verdicts.get(verdict, 0) + int(count)
        for item in summary.get("notable_services", ()):
            notable.append({**item, "account": unit.account} if unit.account is not None else dict(item))
        if "missing_services" in summary:
            found = set(summary["missing_services"])
            missing = found if missing is None else missing & found
        if report.worker is not None:
            stats = workers.setdefault(str(report.worker.index), {"units": 0, "records": 0})
            stats["units"] += 1
            stats["records"] += report.records
        if report.attempt > 1 or any(f.get("code") == "WorkerLost" for f in report.failures):
            retried.append({**unit.unit.to_json(), "attempts": report.attempt, "status": report.status})
    for unit in not_finished:
        regions[str(unit)] = {
            "services": 0,
            "instances": 0,
            "complete": False,
            "error": "cancelled" if cancelled else "not scanned",
        }
    records = sum(report.records for report in reports)
    all_ended = not not_finished and not cancelled
    complete = all_ended and all(report.complete for report in reports) and bool(reports or kept)
    document = {
        "complete": complete,
        "records": records,
        "duration_s": round(duration_s, 3),
        **{key: totals[key] for key in ("requests", "retries", "throttled")},
        "regions": regions,
        "failures": failures,
        "services": verdicts,
        "notable_services": notable,
        "missing_services": sorted(missing or ()),
        "cancelled": cancelled,
        "bytes_received": totals["bytes_received"],
        "units": {
            "planned": len(planned),
            "complete": sum(1 for report in reports if report.complete),
            "incomplete": sum(1 for report in reports if not report.complete),
            "not_finished": len(not_finished),
            "kept": kept,
            "kept_records": kept_records,
            "retried": retried,
        },
        "workers": workers,
    }
    return DistributedSummary(
        complete=complete,
        records=records,
        duration_s=duration_s,
        cancelled=cancelled,
        reports=tuple(reports),
        not_finished=not_finished,
        kept=kept,
        kept_records=kept_records,
        _document=document,
    )


class Progress:
    """The live progress of a distributed scan, from the driver's events::

        progress = Progress(planned=len(units))
        await scan_with_ray_async(..., on_event=progress.on_event)   # e.g. a progress line reads:
        progress.snapshot()   # {"units", "done", "running", "retried", "records", "requests", "failures"}

    Counts move as units end (a worker reports a unit when its part is committed), not page by page.
    """

    def __init__(self, planned: int) -> None:
        self.planned = planned
        self.done = 0
        self._running: set[WorkUnit] = set()
        self.retried = 0
        self.records = 0
        self.requests = 0
        self.failures = 0
        self.lost_workers = 0

    def on_event(self, event: DriverEvent) -> None:
        if isinstance(event, UnitStarted):
            self._running.add(event.unit)
        elif isinstance(event, UnitRetried):
            self._running.discard(event.unit)
            self.retried += 1
        elif isinstance(event, UnitFinished):
            report = event.report
            self._running.discard(report.unit)
            self.done += 1
            self.records += report.records
            self.requests += report.requests
            self.failures += len(report.failures)
        elif isinstance(event, WorkerGone):
            self.lost_workers += 1

    def snapshot(self) -> dict[str, int]:
        return {
            "units": self.planned,
            "done": self.done,
            "running": len(self._running),
            "retried": self.retried,
            "records": self.records,
            "requests": self.requests,
            "failures": self.failures,
            "lost_workers": self.lost_workers,
        }
