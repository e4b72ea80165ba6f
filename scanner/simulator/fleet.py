"""The simulated fleet: regions and their services, what a listing returns, and the ground truth.

``Fleet(spec, seed)`` is deterministic: the same spec and seed give the same services and
instances, field for field. It holds no clock; churn (``scanner.simulator.churn``) calls the
mutation methods with simulator times (seconds since the simulator started), and the ground-truth
queries take such times too.

An instance exists at time ``t`` when ``born <= t < died``: initial instances were born at
``-inf``, churn-started ones when they started; an instance dies when it is stopped or its
service is deleted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.errors import ConfigError
from scanner.simulator.derive import M64, mix64
from scanner.simulator.model import RegionTraits, Service, initial_status, new_service
from scanner.simulator.spec import FleetSpec, allocate_counts

__all__ = [
    "SERVICE_SORT_FIELDS",
    "Fleet",
    "InstanceKey",
    "RegionState",
    "instance_matches",
    "service_matches",
]

#: (ClusterId, ServiceName, InstanceName): what identifies an instance record.
InstanceKey = tuple[str, str, str]

#: Fields ListServices can sort by (``Sort``); the default is CreateTime.
SERVICE_SORT_FIELDS: Final = frozenset(
    {
        "CreateTime", "UpdateTime", "ServiceName", "ServiceId", "ServiceUid", "Status", "TotalInstance",
        "RunningInstance", "PendingInstance", "Cpu", "Gpu", "Memory", "Weight", "CurrentVersion",
        "LatestVersion",
    }
)  # fmt: skip

_INF: Final = math.inf


class RegionState:
    """One region: its services in creation order (deleted ones kept for the ground truth)."""

    __slots__ = ("by_name", "name", "services", "traits", "version")

    def __init__(self, traits: RegionTraits, name: str) -> None:
        self.traits = traits
        self.name = name
        self.services: list[Service] = []
        self.by_name: dict[str, Service] = {}  # live services only
        #: Bumped on every change to any service of the region (ListServices pages depend on all).
        self.version = 0

    @property
    def region(self) -> str:
        return self.traits.region

    def live_services(self) -> list[Service]:
        return list(self.by_name.values())


def service_matches(service: Service, query: ServiceQuery) -> bool:
    """Whether ``service`` passes every filter of a ListServices request.

    ``Filter`` is a case-insensitive substring of the name; ``ResourceName`` matches the resource
    group's id or its alias; ``Label`` needs every pair; the rest are exact matches.
    """
    q = query
    if q.filter is not None and q.filter.lower() not in service.name.lower():
        return False
    checks = (
        (q.service_status, service.status),
        (q.service_type, service.service_type),
        (q.group_name, service.group),
        (q.workspace_id, service.workspace_id),
        (q.service_name, service.name),
        (q.service_uid, service.service_uid),
        (q.quota_id, service.quota_id),
        (q.gateway, service.gateway),
        (q.parent_service_uid, service.parent_uid),
        (q.role, service.role),
        (q.resource_type, service.resource_type),
    )
    for wanted, actual in checks:
        if wanted is not None and wanted != actual:
            return False
    if q.resource_name is not None and q.resource_name not in (service.resource, service.resource_alias):
        return False
    if q.label:
        labels = dict(service.labels)
        if any(labels.get(key) != value for key, value in q.label.items()):
            return False
    return True


def instance_matches(instance: Mapping[str, Any], query: InstanceQuery) -> bool:
    """Whether an instance object passes every filter of a ListServiceInstances request.

    ``Filter`` is a case-insensitive substring of InstanceName, InnerIP, HostIP or InstanceType;
    the others are exact matches (``InstanceIP`` is the InnerIP).
    """
    q = query
    if q.filter is not None:
        needle = q.filter.lower()
        if not any(
            needle in instance[field].lower()
            for field in ("InstanceName", "InnerIP", "HostIP", "InstanceType")
        ):
            return False
    checks = (
        (q.resource_type, "ResourceType"),
        (q.instance_type, "InstanceType"),
        (q.instance_status, "Status"),
        (q.instance_ip, "InnerIP"),
        (q.instance_name, "InstanceName"),
        (q.host_ip, "HostIP"),
        (q.is_spot, "IsSpot"),
        (q.role, "Role"),
    )
    return all(wanted is None or instance[field] == wanted for wanted, field in checks)


class Fleet:
    """Every region and service of a simulated account."""

    def __init__(self, spec: FleetSpec, seed: int = 0, *, caller_uid: str | None = None) -> None:
        self.spec = spec
        self.seed = seed
        seed_key = mix64(seed & M64)
        # The account the fleet belongs to (an organisation's member passes its AccountId).
        self.caller_uid = caller_uid or str(
            1_000_000_000_000_000 + mix64(seed_key ^ 0xCA11) % 9_000_000_000_000_000
        )
        region_ids = spec.region_ids()
        self.regions: dict[str, RegionState] = {}
        for index, region in enumerate(region_ids):
            traits = RegionTraits(seed_key=seed_key, region=region, index=index, caller_uid=self.caller_uid)
            self.regions[region] = RegionState(traits, spec.region_name(region))

        counts = self._initial_counts(spec, random.Random(seed))
        for state, region_counts in zip(self.regions.values(), counts, strict=True):
            names = spec.service_names[state.traits.index] if spec.service_names else ()
            for index, count in enumerate(region_counts):
                name = names[index] if index < len(names) else None
                service = new_service(
                    state.traits,
                    index,
                    name=name,
                    instance_count=count,
                    created_at=-_INF,
                    stopped=count == 0 if spec.instance_counts is not None else None,
                )
                if service.name in state.by_name:
                    raise ConfigError(f"duplicate service name {service.name!r} in {state.region}")
                state.services.append(service)
                state.by_name[service.name] = service
        self._live: list[Service] = [s for state in self.regions.values() for s in state.services]
        self._live_slot: dict[Service, int] = {s: i for i, s in enumerate(self._live)}

    def _initial_counts(self, spec: FleetSpec, rng: random.Random) -> list[list[int]]:
        """Instance counts per region and service: explicit, or ``total_instances`` distributed."""
        if spec.instance_counts is not None:
            return [list(row) for row in spec.instance_counts]
        shape: list[int] = []
        eligible: list[bool] = []
        for state in self.regions.values():
            n = spec.services_in(state.traits.index)
            shape.append(n)
            eligible.extend(initial_status(state.traits, i) != "Stopped" for i in range(n))
        flat = allocate_counts(spec.total_instances, eligible, spec.distribution, rng)
        rows: list[list[int]] = []
        for n in shape:
            rows.append(flat[:n])
            flat = flat[n:]
        return rows

    # --- shape ------------------------------------------------------------------------------------

    def region_ids(self) -> list[str]:
        return list(self.regions)

    def region(self, region: str) -> RegionState:
        return self.regions[region]

    def service(self, region: str, name: str) -> Service | None:
        """The live service ``name`` of ``region``, or None."""
        state = self.regions.get(region)
        return None if state is None else state.by_name.get(name)

    def live_services(self) -> Sequence[Service]:
        """Every live service (a view: do not mutate it)."""
        return self._live

    @property
    def instance_count(self) -> int:
        return sum(s.live_count for s in self._live)

    @property
    def service_count(self) -> int:
        return len(self._live)

    # --- listings ---------------------------------------------------------------------------------

    def list_services(self, region: str, query: ServiceQuery) -> list[Service]:
        """The live services of ``region`` passing ``query``'s filters, in the requested order.

        Default order: newest first (``CreateTime`` descending). Any sort is made total by
        breaking ties on ServiceName then ServiceId, and descending is the exact reverse.
        """
        sort = query.sort or "CreateTime"
        if sort not in SERVICE_SORT_FIELDS:
            raise ConfigError(f"Sort must be one of {', '.join(sorted(SERVICE_SORT_FIELDS))}; got {sort!r}")
        services = [s for s in self.regions[region].by_name.values() if service_matches(s, query)]
        services.sort(key=lambda s: (s.sort_value(sort), s.name, s.service_id))
        if (query.order or "desc") == "desc":
            services.reverse()
        return services

    # --- churn ------------------------------------------------------------------------------------

    def _touch(self, service: Service) -> None:
        self.regions[service.region].version += 1

    def start_instance(self, service: Service, t: float, wall_epoch: int, status: int) -> int:
        index = service.add_instance(t, wall_epoch, status)
        self._touch(service)
        return index

    def stop_instance(self, service: Service, index: int, t: float) -> None:
        service.remove_instance(index, t)
        self._touch(service)

    def restart_instance(self, service: Service, index: int, wall_epoch: int) -> None:
        service.restart_instance(index, wall_epoch)
        self._touch(service)

    def create_service(
        self, region: str, t: float, wall_epoch: int, instances: int, statuses: list[int]
    ) -> Service:
        """Create a service now, with ``instances`` new instances (statuses given, one each)."""
        state = self.regions[region]
        index = len(state.services)
        service = new_service(
            state.traits, index, name=None, instance_count=0, created_at=t, create_epoch=wall_epoch
        )
        while service.name in state.by_name:  # a user-named service took the generated name
            service.name += "_n"
        state.services.append(service)
        state.by_name[service.name] = service
        self._live_slot[service] = len(self._live)
        self._live.append(service)
        for status in statuses[:instances]:
            service.add_instance(t, wall_epoch, status)
        self._touch(service)
        return service

    def delete_service(self, service: Service, t: float) -> None:
        service.deleted_at = t
        state = self.regions[service.region]
        del state.by_name[service.name]
        slot = self._live_slot.pop(service)
        last = self._live.pop()
        if last is not service:
            self._live[slot] = last
            self._live_slot[last] = slot
        service.version += 1
        state.version += 1

    # --- ground truth -----------------------------------------------------------------------------

    def lifetimes(self) -> Iterator[tuple[InstanceKey, float, float]]:
        """Every instance that ever existed, with when it was born and died (inf: still alive)."""
        for state in self.regions.values():
            for service in state.services:
                end = _INF if service.deleted_at is None else service.deleted_at
                died_at = service.died_at
                for index in range(service.next_index):
                    key = (service.region, service.name, service.instance_name(index))
                    yield key, service.born_at(index), min(died_at.get(index, _INF), end)

    def existed_throughout(self, t0: float, t1: float) -> set[InstanceKey]:
        """Keys of the instances that existed at every moment of ``[t0, t1]``."""
        return {key for key, born, died in self.lifetimes() if born <= t0 and died > t1}

    def existed_at_any(self, t0: float, t1: float) -> set[InstanceKey]:
        """Keys of the instances that existed at some moment of ``[t0, t1]``."""
        return {key for key, born, died in self.lifetimes() if born <= t1 and died > t0}

    def current(self) -> Iterator[tuple[Service, int]]:
        """Every live instance now: (service, index), region by region, in start order."""
        for state in self.regions.values():
            for service in state.by_name.values():
                for index in service.live_indexes():
                    yield service, index

    def current_keys(self) -> Iterator[InstanceKey]:
        for service, index in self.current():
            yield service.region, service.name, service.instance_name(index)

    def expected_records(self) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        """``(region, service_name, instance, service)`` for every live instance, as the API shows them."""
        for state in self.regions.values():
            for service in state.by_name.values():
                indexes = service.live_indexes()
                if not indexes:
                    continue
                service_dict = service.render_service()
                for index in indexes:
                    yield state.region, service.name, service.render_instance(index), service_dict
