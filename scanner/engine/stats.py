"""Live counters of a running scan, their read-only snapshots, and the final summary.

Counters are plain attributes bumped from the event loop thread (no locks needed). Readers get
frozen snapshots: ``ScanStatistics`` while the scan runs (for progress) and ``ScanSummary`` at
the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "AccountSummary",
    "Failure",
    "LiveStats",
    "RegionStatistics",
    "RegionSummary",
    "ScanStatistics",
    "ScanSummary",
    "ServiceVerdict",
    "StatisticsTotals",
]


class ServiceVerdict(StrEnum):
    """How one service's instance listing ended (see ``scanner.engine.listing``).

    Only ``complete``, ``reread`` and ``deleted`` leave the scan complete; ``unstable`` and
    ``failed`` come with a ``Failure`` that makes it incomplete.
    """

    COMPLETE = "complete"  # read once, and proven unchanged while it was read
    REREAD = "reread"  # it changed while read; a newest-first re-read was proven consistent
    UNSTABLE = "unstable"  # still changing after every pass: a ListingUnstable failure
    DELETED = "deleted"  # the API said, in its own JSON error code, that the service is gone
    FAILED = "failed"  # an error after retries, or an implausible TotalCount: a failure


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that could not be listed after retries. ``service`` is None for a region's own;
    ``region`` is None too for an account's own (its role could not be assumed). ``account`` is
    set in multi-account scans (and then written in ``to_dict``)."""

    region: str | None
    service: str | None
    code: str
    message: str
    action: str | None = None
    account: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "region": self.region,
            "service": self.service,
            "code": self.code,
            "message": self.message,
        }
        if self.account is not None:
            data["account"] = self.account
        return data


@dataclass(slots=True)
class _RegionCounters:
    services_known: int = 0
    services_done: int = 0
    instances_known: int = 0
    instances_done: int = 0
    requests: int = 0
    error: str | None = None
    failed_services: int = 0
    services_listed: bool = False


@dataclass(frozen=True, slots=True)
class RegionStatistics:
    services_known: int
    services_done: int
    instances_known: int
    instances_done: int
    requests: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ScanStatistics:
    """A live snapshot, for progress displays. Totals grow as listings reveal their TotalCount."""

    elapsed_s: float
    requests: int
    retries: int
    throttled: int
    bytes_received: int
    records: int
    failures: int
    regions: dict[str, RegionStatistics]
    #: Multi-account scans: the accounts to scan, and those finished (0 and 0 otherwise).
    accounts_total: int = 0
    accounts_done: int = 0

    @property
    def services_known(self) -> int:
        return sum(r.services_known for r in self.regions.values())

    @property
    def services_done(self) -> int:
        return sum(r.services_done for r in self.regions.values())

    @property
    def instances_known(self) -> int:
        return sum(r.instances_known for r in self.regions.values())

    @property
    def instances_done(self) -> int:
        return sum(r.instances_done for r in self.regions.values())


@dataclass(frozen=True, slots=True)
class RegionSummary:
    services: int
    instances: int
    complete: bool
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "services": self.services,
            "instances": self.instances,
            "complete": self.complete,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """How one account of a multi-account scan ended. ``error`` names why it is incomplete."""

    name: str | None
    complete: bool
    error: str | None
    services: int
    instances: int
    regions: dict[str, RegionSummary]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "complete": self.complete,
            "error": self.error,
            "services": self.services,
            "instances": self.instances,
            "regions": {name: region.to_dict() for name, region in self.regions.items()},
        }


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """How a scan ended. ``complete`` is True only if every region and service was fully listed."""

    complete: bool
    records: int
    duration_s: float
    requests: int
    retries: int
    throttled: int
    regions: dict[str, RegionSummary]
    failures: tuple[Failure, ...]
    verdicts: dict[str, int] = field(default_factory=dict)
    #: (region, service, verdict) of every service whose listing was not simply complete.
    notable_services: tuple[tuple[str, str, str], ...] = ()
    #: Services asked for by name that no scanned region has.
    missing_services: tuple[str, ...] = ()
    cancelled: bool = False
    bytes_received: int = 0
    #: Multi-account scans only (None otherwise): each scanned account, by AccountId.
    accounts: dict[str, AccountSummary] | None = None
    #: Multi-account scans: members not scanned because of their status, as (id, status).
    skipped_accounts: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written by ``eas-scan --summary``."""
        data: dict[str, Any] = {
            "complete": self.complete,
            "records": self.records,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "regions": {name: region.to_dict() for name, region in self.regions.items()},
            "failures": [failure.to_dict() for failure in self.failures],
            "services": dict(self.verdicts),
            "notable_services": [
                {"region": region, "service": service, "verdict": verdict}
                for region, service, verdict in self.notable_services
            ],
            "missing_services": list(self.missing_services),
            "cancelled": self.cancelled,
            "bytes_received": self.bytes_received,
        }
        if self.accounts is not None:
            data["accounts"] = {account: entry.to_dict() for account, entry in self.accounts.items()}
            data["skipped_accounts"] = [
                {"id": account, "status": status} for account, status in self.skipped_accounts
            ]
        return data


class LiveStats:
    """The mutable counters behind ``ScanStatistics`` and ``ScanSummary``."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self.bytes_received = 0
        self.records = 0
        self.failures: list[Failure] = []
        self.regions: dict[str, _RegionCounters] = {}
        self.verdicts: dict[str, int] = {verdict.value: 0 for verdict in ServiceVerdict}
        self.notable_services: list[tuple[str, str, str]] = []
        #: Regions were found, and the unit filter (a shard, a resume) kept none of them: the scan
        #: has done all it was asked, so it can be complete with no region.
        self.no_unit_kept = False

    def region(self, name: str) -> _RegionCounters:
        counters = self.regions.get(name)
        if counters is None:
            counters = self.regions[name] = _RegionCounters()
        return counters

    def fail(self, failure: Failure, *, region_level: bool) -> None:
        self.failures.append(failure)
        assert failure.region is not None  # an account's own failures are not a region's
        counters = self.region(failure.region)
        if region_level:
            if counters.error is None:
                counters.error = f"{failure.code}: {failure.message}"
        else:
            counters.failed_services += 1

    def service_done(self, region: str, service: str, verdict: ServiceVerdict) -> None:
        self.verdicts[verdict.value] += 1
        self.region(region).services_done += 1
        if verdict is not ServiceVerdict.COMPLETE:
            self.notable_services.append((region, service, verdict.value))

    def snapshot(self, now: float) -> ScanStatistics:
        return ScanStatistics(
            elapsed_s=now - self.started_at,
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            bytes_received=self.bytes_received,
            records=self.records,
            failures=len(self.failures),
            regions={
                name: RegionStatistics(
                    services_known=c.services_known,
                    services_done=c.services_done,
                    instances_known=c.instances_known,
                    instances_done=c.instances_done,
                    requests=c.requests,
                    error=c.error,
                )
                for name, c in self.regions.items()
            },
        )

    def summary(self, now: float, *, cancelled: bool, missing_services: tuple[str, ...]) -> ScanSummary:
        regions = {}
        for name, c in self.regions.items():
            complete = c.error is None and c.failed_services == 0 and c.services_listed and not cancelled
            error = c.error
            if error is None and c.failed_services:
                error = f"{c.failed_services} service(s) failed"
            if error is None and cancelled:
                error = "cancelled"
            regions[name] = RegionSummary(
                services=c.services_done, instances=c.instances_done, complete=complete, error=error
            )
        return ScanSummary(
            complete=not cancelled
            and all(r.complete for r in regions.values())
            and (bool(regions) or self.no_unit_kept),
            records=self.records,
            duration_s=now - self.started_at,
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            regions=regions,
            failures=tuple(self.failures),
            verdicts=dict(self.verdicts),
            notable_services=tuple(self.notable_services),
            missing_services=missing_services,
            cancelled=cancelled,
            bytes_received=self.bytes_received,
        )


class StatisticsTotals:
    """Scans' counters added up, regions by name: the live view of several scans at once (the
    accounts of an organisation, the units of a distributed scan)."""

    def __init__(self) -> None:
        self.requests = self.retries = self.throttled = self.bytes_received = 0
        self.records = self.failures = 0
        self.regions: dict[str, RegionStatistics] = {}

    def add(self, stats: ScanStatistics | StatisticsTotals) -> None:
        self.requests += stats.requests
        self.retries += stats.retries
        self.throttled += stats.throttled
        self.bytes_received += stats.bytes_received
        self.records += stats.records
        self.failures += stats.failures
        for name, region in stats.regions.items():
            self.add_region(name, region)

    def add_region(self, name: str, region: RegionStatistics) -> None:
        held = self.regions.get(name)
        if held is None:
            self.regions[name] = region
            return
        self.regions[name] = RegionStatistics(
            services_known=held.services_known + region.services_known,
            services_done=held.services_done + region.services_done,
            instances_known=held.instances_known + region.instances_known,
            instances_done=held.instances_done + region.instances_done,
            requests=held.requests + region.requests,
            error=held.error or region.error,
        )
