"""An in-memory EAS for engine tests: paging, sorting, filters, hooks for faults and churn."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from scanner.eas.models import Page, Region
from scanner.eas.params import InstanceQuery, ServiceQuery

Hook = Callable[["Call"], Awaitable[None] | None]


@dataclass
class Call:
    region: str
    action: str
    service: str | None
    page_number: int
    page_size: int
    query: Any


def make_instance(service: str, index: int, start: int) -> dict[str, Any]:
    return {
        "InstanceName": f"{service}-{index:05d}",
        "StartTime": f"2026-01-01T00:{start // 60 % 60:02d}:{start % 60:02d}Z",
        "_order": start,
        "Status": "Running",
        "InnerIP": f"10.0.{index // 250}.{index % 250}",
        "LastState": [{"Reason": "OOMKilled"}] if index % 7 == 0 else [],
        "IsSpot": index % 3 == 0,
    }


@dataclass
class FakeService:
    name: str
    created: int
    instances: list[dict[str, Any]] = field(default_factory=list)

    def as_item(self, region: str) -> dict[str, Any]:
        return {
            "ServiceName": self.name,
            "ServiceId": f"eas-m-{self.name}",
            "ServiceUid": f"uid-{self.name}",
            "Status": "Running",
            "ServiceGroup": "group",
            "Resource": "eas-r-1",
            "ResourceAlias": "alias",
            "WorkspaceId": "1234",
            "Labels": [{"LabelKey": "env", "LabelValue": "test"}],
            "CreateTime": f"2025-01-01T00:00:{self.created % 60:02d}Z",
            "Region": region,
            "TotalInstance": len(self.instances),
            "Image": "not-in-summary",
        }


class FakeEas:
    """Speaks the engine's ``EasApi`` from a dict: region -> service -> instances."""

    def __init__(self, fleet: dict[str, dict[str, int]], *, page_cap: int = 100) -> None:
        self.page_cap = page_cap
        self.regions: dict[str, dict[str, FakeService]] = {}
        self._counter = itertools.count()
        for region, services in fleet.items():
            self.regions[region] = {}
            for name, count in services.items():
                self.add_service(region, name, count)
        self.hooks: list[Hook] = []
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.region_in_flight: dict[str, int] = {}
        self.region_peak: dict[str, int] = {}
        self.listing_in_flight: dict[str, int] = {}
        self.listing_peak: dict[str, int] = {}
        self.delay = 0.0

    def add_service(self, region: str, name: str, count: int) -> FakeService:
        service = FakeService(name, next(self._counter))
        for index in range(count):
            service.instances.append(make_instance(name, index, next(self._counter)))
        self.regions[region][name] = service
        return service

    def add_instance(self, region: str, name: str) -> dict[str, Any]:
        service = self.regions[region][name]
        serial = next(self._counter)
        instance = make_instance(name, 90000 + serial, serial)
        service.instances.append(instance)
        return instance

    def expected(self) -> set[tuple[str, str, str]]:
        return {
            (region, name, instance["InstanceName"])
            for region, services in self.regions.items()
            for name, service in services.items()
            for instance in service.instances
        }

    async def _enter(self, call: Call) -> None:
        self.calls.append(call)
        for hook in self.hooks:
            result = hook(call)
            if result is not None:
                await result
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        count = self.region_in_flight[call.region] = self.region_in_flight.get(call.region, 0) + 1
        self.region_peak[call.region] = max(self.region_peak.get(call.region, 0), count)
        if call.service is not None:
            key = f"{call.region}/{call.service}"
            count = self.listing_in_flight[key] = self.listing_in_flight.get(key, 0) + 1
            self.listing_peak[key] = max(self.listing_peak.get(key, 0), count)
        try:
            await anyio.sleep(self.delay)
        except BaseException:
            self._leave(call)
            raise

    def _leave(self, call: Call) -> None:
        self.in_flight -= 1
        self.region_in_flight[call.region] -= 1
        if call.service is not None:
            self.listing_in_flight[f"{call.region}/{call.service}"] -= 1

    async def describe_regions(self, region: str = "cn-shanghai") -> list[Region]:
        call = Call(region, "DescribeRegions", None, 1, 0, None)
        await self._enter(call)
        self._leave(call)
        return [Region(name, name.upper()) for name in self.regions]

    async def list_services(
        self, region: str, query: ServiceQuery | None = None, *, page_number: int = 1, page_size: int = 100
    ) -> Page:
        call = Call(region, "ListServices", None, page_number, page_size, query)
        await self._enter(call)
        try:
            services = sorted(self.regions[region].values(), key=lambda s: s.created)
            if query is not None and query.filter:
                services = [s for s in services if query.filter in s.name]
            if query is not None and query.order == "desc":
                services.reverse()
            return self._page([s.as_item(region) for s in services], page_number, page_size)
        finally:
            self._leave(call)

    async def list_service_instances(
        self,
        region: str,
        service: str,
        query: InstanceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
    ) -> Page:
        call = Call(region, "ListServiceInstances", service, page_number, page_size, query)
        await self._enter(call)
        try:
            from scanner.errors import NotFoundError

            found = self.regions[region].get(service)
            if found is None:
                raise NotFoundError(
                    "no such service", region=region, action="ListServiceInstances", service=service,
                    status=404, code="InvalidService.NotFound",
                )  # fmt: skip
            instances = sorted(found.instances, key=lambda i: i["_order"])
            if query is not None and query.instance_status:
                instances = [i for i in instances if i["Status"] == query.instance_status]
            if query is not None and query.order == "desc":
                instances.reverse()
            # The API returns fresh objects each time (the engine tags records in place).
            return self._page([dict(i) for i in instances], page_number, page_size)
        finally:
            self._leave(call)

    def _page(self, items: list[dict[str, Any]], number: int, size: int) -> Page:
        size = min(size, self.page_cap)
        chunk = items[(number - 1) * size : number * size]
        return Page(chunk, len(items), number, size, f"req-{len(self.calls)}", body_bytes=100 * len(chunk))
