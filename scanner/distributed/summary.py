"""The summary of a distributed scan, added up from the units' reports.

Its ``to_dict()`` has every key of a local scan's summary (``ScanSummary.to_dict()``, the
``--summary`` JSON), so what reads one reads the other, plus ``units`` (counts, and the units retried
or given up) and ``workers`` (units and records per worker). In a multi-account scan (a ``roster``),
it is a local organisation scan's: ``regions`` by region (its accounts' counts added up),
``accounts`` (each account's block, with its own ``regions``), ``skipped_accounts``, and each
failure names its ``account``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scanner.distributed.driver import (
    DriverEvent,
    UnitFinished,
    UnitProgress,
    UnitRetried,
    UnitStarted,
    WorkerGone,
)
from scanner.distributed.units import UnitReport, WorkUnit
from scanner.engine.stats import RegionStatistics, ScanStatistics, StatisticsTotals

__all__ = ["DistributedSummary", "OrgRoster", "Progress", "summarize"]


@dataclass(frozen=True, slots=True)
class OrgRoster:
    """The accounts of an organisation scan, as the driver found them before handing units out.

    ``accounts``: every account to scan, in the order listed, with its name (None: none) and its
    regions (the units; empty for an account that ``failed``). ``failed``: the accounts that could
    not even be planned (their role could not be assumed, their regions not listed), each with the
    error a local scan gives it (``"Code: message"``); ``failures``: their failures (``account`` set,
    ``region`` None). ``skipped``: members left out for their status, as (id, status).
    """

    accounts: Mapping[str, tuple[str | None, tuple[str, ...]]]
    failed: Mapping[str, str] = field(default_factory=dict)
    failures: tuple[Mapping[str, Any], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def units(self) -> list[WorkUnit]:
        return [WorkUnit(a, r) for a, (_, regions) in self.accounts.items() for r in regions]


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
    roster: OrgRoster | None = None,
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
    accounts: dict[str, Any] | None = None
    if roster is not None:
        accounts = _accounts(roster, regions, cancelled)
        regions = _by_region(regions)
        failures = [dict(failure) for failure in roster.failures] + failures
        complete = complete and not roster.failed
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
        **(
            {}
            if roster is None or accounts is None
            else {
                "accounts": accounts,
                "skipped_accounts": [{"id": a, "status": status} for a, status in roster.skipped],
            }
        ),
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


def _accounts(roster: OrgRoster, regions: Mapping[str, Mapping[str, Any]], cancelled: bool) -> dict[str, Any]:
    """Each account's block, as a local organisation scan's summary has it (``AccountSummary``)."""
    blocks: dict[str, Any] = {}
    for account, (name, planned) in roster.accounts.items():
        error = roster.failed.get(account)
        if error is not None:
            blocks[account] = {
                "name": name,
                "complete": False,
                "error": error,
                "services": 0,
                "instances": 0,
                "regions": {},
            }
            continue
        own = {r: dict(regions[f"{account}/{r}"]) for r in planned if f"{account}/{r}" in regions}
        complete = all(region["complete"] for region in own.values())
        first = next(((r, region["error"]) for r, region in own.items() if region.get("error")), None)
        if complete:
            error = None
        elif first is not None:
            error = f"{first[0]}: {first[1]}"
        else:
            error = "cancelled" if cancelled else "incomplete"
        blocks[account] = {
            "name": name,
            "complete": complete,
            "error": error,
            "services": sum(int(region.get("services", 0)) for region in own.values()),
            "instances": sum(int(region.get("instances", 0)) for region in own.values()),
            "regions": {
                r: {key: region.get(key) for key in ("services", "instances", "complete", "error")}
                for r, region in own.items()
            },
        }
    return blocks


def _by_region(units: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``account/region`` entries added up by region, as a local organisation scan's ``regions``."""
    merged: dict[str, dict[str, Any]] = {}
    for name, region in units.items():
        key = name.rpartition("/")[2]
        held = merged.get(key)
        if held is None:
            merged[key] = {k: region.get(k) for k in ("services", "instances", "complete", "error")}
            continue
        held["services"] = int(held["services"] or 0) + int(region.get("services") or 0)
        held["instances"] = int(held["instances"] or 0) + int(region.get("instances") or 0)
        held["complete"] = bool(held["complete"]) and bool(region.get("complete"))
        held["error"] = held["error"] or region.get("error")
    return merged


class Progress:
    """The live progress of a distributed scan, from the driver's events::

        progress = Progress(planned=len(units))
        await scan_with_ray_async(..., on_event=progress.on_event)   # e.g. a progress line reads:
        progress.snapshot()   # {"units", "done", "running", "retried", "records", "requests", "failures"}
        progress.statistics(elapsed_s)   # a local scan's ScanStatistics: for its progress displays

    ``snapshot`` counts units as they end. ``statistics`` also adds the live counters of the units
    still running (``UnitProgress``, a worker's answer every 0.2 s), so it moves page by page, like a
    local scan's; a unit retried drops what its lost attempt had counted. ``accounts``: the accounts
    of an organisation scan, and ``accounts_done`` those already done before any unit ran (kept by
    a resume, or failed while planned).
    """

    def __init__(
        self, planned: int, *, units: Iterable[WorkUnit] = (), accounts: int = 0, accounts_done: int = 0
    ) -> None:
        self.planned = planned
        self.done = 0
        self._running: set[WorkUnit] = set()
        self.retried = 0
        self.records = 0
        self.requests = 0
        self.failures = 0
        self.lost_workers = 0
        self._accounts = accounts
        self._accounts_done = accounts_done
        #: Units of each account still to end (accounts of the planned units only).
        self._left: dict[str | None, int] = {}
        for unit in units:
            self._left[unit.account] = self._left.get(unit.account, 0) + 1
        self._live: dict[WorkUnit, ScanStatistics] = {}
        self._ended = StatisticsTotals()

    def on_event(self, event: DriverEvent) -> None:
        if isinstance(event, UnitProgress):
            live = event.live
            if live.unit in self._running:
                self._live[live.unit] = live.statistics
        elif isinstance(event, UnitStarted):
            self._running.add(event.unit)
        elif isinstance(event, UnitRetried):
            self._running.discard(event.unit)
            self._live.pop(event.unit, None)
            self.retried += 1
        elif isinstance(event, UnitFinished):
            report = event.report
            self._running.discard(report.unit)
            self._live.pop(report.unit, None)
            self.done += 1
            self.records += report.records
            self.requests += report.requests
            self.failures += len(report.failures)
            _add_report(self._ended, report)
            left = self._left.get(report.unit.account)
            if left is not None:
                self._left[report.unit.account] = left - 1
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

    def statistics(self, elapsed_s: float) -> ScanStatistics:
        """The scan's counters now, as a local scan's ``statistics()`` gives them (regions by name)."""
        sums = StatisticsTotals()
        sums.add(self._ended)
        for live in self._live.values():
            sums.add(live)
        done = sum(1 for account, left in self._left.items() if account is not None and left <= 0)
        return ScanStatistics(
            elapsed_s=elapsed_s,
            requests=sums.requests,
            retries=sums.retries,
            throttled=sums.throttled,
            bytes_received=sums.bytes_received,
            records=sums.records,
            failures=sums.failures,
            regions=dict(sums.regions),
            accounts_total=self._accounts,
            accounts_done=self._accounts_done + done if self._accounts else 0,
        )


def _add_report(totals: StatisticsTotals, report: UnitReport) -> None:
    """A unit that ended: its last counters, or (none: given up, a custom runner) its report."""
    if report.statistics is not None:
        totals.add(report.statistics)
        return
    summary = report.summary
    totals.requests += report.requests
    totals.records += report.records
    totals.failures += len(report.failures)
    region = summary.get("regions", {}).get(report.unit.region) or {}
    services = int(region.get("services", 0))
    totals.add_region(
        report.unit.region,
        RegionStatistics(
            services_known=services,
            services_done=services,
            instances_known=report.records,
            instances_done=report.records,
            requests=report.requests,
            error=None if report.complete else "; ".join(str(f.get("message")) for f in report.failures),
        ),
    )
