"""Records of a simulated fleet, as the engine yields them (one shared ``Service`` per service)."""

from __future__ import annotations

from typing import Any

from scanner.records import service_summary
from scanner.simulator.fleet import Fleet
from scanner.simulator.spec import FleetSpec

#: A few regions of uneven sizes, one of them empty (a region with no instances).
SPEC = FleetSpec(
    regions=("cn-hangzhou", "cn-shanghai", "cn-beijing", "cn-shenzhen", "ap-southeast-1"),
    instance_counts=((120, 35, 0, 7), (60, 60), (0,), (300,), (1, 2, 3)),
)


def records_by_region(
    spec: FleetSpec = SPEC, seed: int = 0, account: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every live instance of the fleet as a record, by region (every region, even an empty one)."""
    fleet = Fleet(spec, seed)
    by_region: dict[str, list[dict[str, Any]]] = {region: [] for region in fleet.region_ids()}
    summaries: dict[tuple[str, str], dict[str, Any]] = {}
    for region, name, instance, service in fleet.expected_records():
        summary = summaries.get((region, name))
        if summary is None:
            summary = summaries[(region, name)] = service_summary(service)
        record = dict(instance, ClusterId=region, ServiceName=name, Service=summary)
        if account is not None:
            record["AccountId"] = account
        by_region[region].append(record)
    return by_region


def pages(records: list[dict[str, Any]], size: int = 100) -> list[list[dict[str, Any]]]:
    return [records[i : i + size] for i in range(0, len(records), size)]
