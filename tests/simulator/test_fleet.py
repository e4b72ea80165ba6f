"""The fleet model: deterministic, plausible, consistent, compact."""

from __future__ import annotations

import re
import time
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.eas.params import INSTANCE_FIELDS, SERVICE_FIELDS, ServiceQuery
from scanner.errors import ConfigError
from scanner.simulator.derive import ANCHOR_EPOCH, iso, pod_suffix
from scanner.simulator.fleet import Fleet
from scanner.simulator.model import PENDING, RUNNING
from scanner.simulator.spec import PRESETS, Even, FleetSpec, LongTail, allocate_counts, preset

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def all_records(fleet: Fleet) -> list[tuple[str, str, dict[str, object], dict[str, object]]]:
    return list(fleet.expected_records())


def test_same_seed_same_fleet_different_seed_different_fleet() -> None:
    a, b, c = Fleet(preset("small"), 5), Fleet(preset("small"), 5), Fleet(preset("small"), 6)
    records_a, records_b, records_c = all_records(a), all_records(b), all_records(c)
    assert records_a == records_b
    assert [r[2]["InstanceName"] for r in records_a] != [r[2]["InstanceName"] for r in records_c]
    services = lambda f: [s.render_service() for s in f.live_services()]  # noqa: E731
    assert services(a) == services(b)
    assert services(a) != services(c)


@pytest.mark.parametrize(
    ("name", "regions", "services", "instances"),
    [("small", 2, 50, 1_000), ("medium", 6, 1_002, 50_000)],
)
def test_presets_have_their_size(name: str, regions: int, services: int, instances: int) -> None:
    fleet = Fleet(PRESETS[name], 1)
    assert len(fleet.regions) == regions
    assert fleet.service_count == services
    assert fleet.instance_count == instances


def test_large_starts_fast_small_and_has_a_long_tail() -> None:
    started = time.perf_counter()
    fleet = Fleet(PRESETS["large"], 1)
    elapsed = time.perf_counter() - started
    assert (len(fleet.regions), fleet.service_count, fleet.instance_count) == (10, 10_000, 1_000_000)
    assert elapsed < 10  # ~1 s here; nothing per instance is built or stored
    assert all(not s.extra_start and not s.removed for s in fleet.live_services())
    counts = sorted(s.live_count for s in fleet.live_services())
    assert counts[len(counts) // 2] <= 20  # most services have a few instances
    assert counts[-1] >= 5_000  # some have thousands
    biggest = max(fleet.live_services(), key=lambda s: s.live_count)
    page = orjson.loads(biggest.instances_json(biggest.live_indexes(19_000, 19_100)))
    assert len(page) == 100


def test_every_field_is_there_and_plausible() -> None:
    fleet = Fleet(preset("small"), 3)
    records = all_records(fleet)
    assert len(records) == 1_000
    for region, service_name, instance, service in records:
        assert list(instance) != []
        assert set(instance) == set(INSTANCE_FIELDS)
        assert all(instance[f] is not None for f in INSTANCE_FIELDS)
        assert set(service) == set(SERVICE_FIELDS)
        assert all(service[f] is not None for f in SERVICE_FIELDS)
        assert instance["Namespace"] == service_name == service["ServiceName"]
        assert str(instance["InstanceName"]).startswith(service_name + "-")
        assert ISO.fullmatch(str(instance["StartTime"]))
        assert instance["StartAt"] == instance["StartTime"]
        assert ISO.fullmatch(str(service["CreateTime"]))
        assert ISO.fullmatch(str(service["UpdateTime"]))
        for field in ("InnerIP", "HostIP", "TenantInstanceIP", "TenantHostIP", "ExternalIP"):
            match = IPV4.fullmatch(str(instance[field]))
            assert match, instance[field]
            assert all(0 <= int(octet) <= 255 for octet in match.groups()), instance[field]
        assert instance["HostName"] == f"{region}.{instance['HostIP']}"
        assert str(instance["Zone"]).startswith(region + "-")
        assert service["Region"] == region
        assert isinstance(instance["LastState"], list)
        assert (instance["RestartCount"] > 0) == bool(instance["LastState"])  # type: ignore[operator]
        if instance["IsSpot"]:
            assert instance["CurrentAmount"] < instance["OriginalAmount"]  # type: ignore[operator]
        else:
            assert instance["CurrentAmount"] == instance["OriginalAmount"]
        assert instance["ReadyProcesses"] == (
            instance["TotalProcesses"] if instance["Status"] == "Running" else 0
        )
        assert isinstance(service["ServiceConfig"], str)
        assert orjson.loads(service["ServiceConfig"])


def test_the_fleet_has_a_mix_of_everything() -> None:
    fleet = Fleet(preset("medium"), 1)
    instances = [instance for *_, instance, _ in fleet.expected_records()]
    mix = lambda field: Counter(i[field] for i in instances)  # noqa: E731
    assert {"Running", "Pending", "Failed", "Terminating"} <= set(mix("Status"))
    assert mix("Status").most_common(1)[0][0] == "Running"
    assert set(mix("IsSpot")) == {True, False}
    assert set(mix("Isolated")) == {True, False}
    assert set(mix("ResourceType")) == {"PublicResource", "DedicatedResource"}
    assert {"Standard", "Queue", "DataSet", "SDProxy"} <= set(mix("Role"))
    assert len(mix("InstanceType")) >= 5
    assert len(mix("Zone")) >= 10
    assert sum(1 for i in instances if i["RestartCount"]) > len(instances) // 20
    services = [s.render_service() for s in fleet.live_services()]
    statuses = Counter(s["Status"] for s in services)
    assert {"Running", "Stopped", "Failed", "Updating"} <= set(statuses)
    assert all(s["TotalInstance"] == 0 for s in services if s["Status"] == "Stopped")
    assert len({s["ServiceType"] for s in map(_service_type, services)}) == 4
    assert any(s["ParentUid"] for s in services)
    assert any(s["Gateway"] for s in services)
    assert any(s["QuotaId"] for s in services)
    assert any(s["WorkspaceId"] for s in services)
    assert any(s["AppType"] for s in services)


def _service_type(service: dict[str, object]) -> dict[str, object]:
    return {"ServiceType": orjson.loads(str(service["ServiceConfig"]))["metadata"]["type"]}


def test_service_counts_agree_with_instances() -> None:
    fleet = Fleet(preset("small"), 4)
    by_service: dict[tuple[str, str], list[dict[str, object]]] = {}
    for region, name, instance, _ in fleet.expected_records():
        by_service.setdefault((region, name), []).append(instance)
    for service in fleet.live_services():
        rendered = service.render_service()
        instances = by_service.get((service.region, service.name), [])
        statuses = Counter(i["Status"] for i in instances)
        assert rendered["TotalInstance"] == len(instances)
        assert rendered["RunningInstance"] == statuses["Running"]
        assert rendered["PendingInstance"] == statuses["Pending"]


def test_instance_start_times_strictly_increase_and_names_are_unique() -> None:
    fleet = Fleet(preset("medium"), 2)
    for service in fleet.live_services()[:300]:
        starts = [service.start_epoch(i) for i in service.live_indexes()]
        assert starts == sorted(set(starts))
        assert all(s < ANCHOR_EPOCH for s in starts)
        names = [service.instance_name(i) for i in service.live_indexes()]
        assert len(set(names)) == len(names)


def test_rendering_paths_agree() -> None:
    fleet = Fleet(preset("small"), 9)
    for service in fleet.live_services():
        indexes = service.live_indexes()
        page = orjson.loads(service.instances_json(indexes))
        assert page == [service.render_instance(i) for i in indexes]
        assert [i["StartTime"] for i in page] == [iso(service.start_epoch(i)) for i in indexes]
        assert [i["InstanceName"] for i in page] == [service.instance_name(i) for i in indexes]


def test_default_service_order_is_newest_first_and_total() -> None:
    fleet = Fleet(preset("medium"), 1)
    region = fleet.region_ids()[0]
    default = fleet.list_services(region, ServiceQuery())
    assert [s.create_epoch for s in default] == sorted((s.create_epoch for s in default), reverse=True)
    ascending = fleet.list_services(region, ServiceQuery(sort="TotalInstance", order="asc"))
    assert [s.live_count for s in ascending] == sorted(s.live_count for s in ascending)
    descending = fleet.list_services(region, ServiceQuery(sort="TotalInstance", order="desc"))
    assert descending == ascending[::-1]
    with pytest.raises(ConfigError, match="Sort"):
        fleet.list_services(region, ServiceQuery(sort="Colour"))


# --- churn bookkeeping ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 300),
    stops=st.lists(st.integers(0, 10_000), max_size=60),
    starts=st.integers(0, 20),
)
def test_live_positions_skip_stopped_instances(count: int, stops: list[int], starts: int) -> None:
    fleet = Fleet(FleetSpec(regions=1, instance_counts=((count,),)), 0)
    service = fleet.live_services()[0]
    for _ in range(starts):
        fleet.start_instance(service, 1.0, ANCHOR_EPOCH + 5, RUNNING)
    alive = list(range(service.next_index))
    for pick in stops:
        if not alive:
            break
        index = alive.pop(pick % len(alive))
        fleet.stop_instance(service, index, 2.0)
    assert service.live_count == len(alive)
    assert service.live_indexes() == alive
    assert [service.index_at(p) for p in range(len(alive))] == alive
    for lo in range(0, len(alive), 7):
        assert service.live_indexes(lo, lo + 5) == alive[lo : lo + 5]
    statuses = Counter(service.status_code(i) for i in alive)
    assert (service.running, service.pending) == (statuses[RUNNING], statuses[PENDING])


def test_started_instances_start_after_every_other() -> None:
    fleet = Fleet(FleetSpec(regions=1, instance_counts=((5, 3),)), 0)
    service = fleet.live_services()[0]
    before = max(service.start_epoch(i) for i in service.live_indexes())
    first = fleet.start_instance(service, 1.0, ANCHOR_EPOCH - 999, RUNNING)  # a wall clock in the past
    second = fleet.start_instance(service, 1.0, ANCHOR_EPOCH - 999, PENDING)  # the same second
    assert before < service.start_epoch(first) < service.start_epoch(second)
    assert service.render_instance(second)["Status"] == "Pending"


# --- spec ------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    total=st.integers(0, 5_000),
    eligible=st.lists(st.booleans(), min_size=1, max_size=80),
    sigma=st.floats(0, 3),
    cap=st.integers(1, 2_000),
    seed=st.integers(0, 2**32),
)
def test_allocation_is_exact_and_respects_the_cap(
    total: int, eligible: list[bool], sigma: float, cap: int, seed: int
) -> None:
    import random

    counts = allocate_counts(total, eligible, LongTail(sigma, cap), random.Random(seed))
    slots = sum(eligible)
    if not slots:
        assert counts == [0] * len(eligible)
        return
    assert sum(counts) == total
    assert all(c == 0 for c, ok in zip(counts, eligible, strict=True) if not ok)
    if total >= slots:
        assert all(c >= 1 for c, ok in zip(counts, eligible, strict=True) if ok)
    if slots * cap >= total:
        assert max(counts) <= cap
    even = allocate_counts(total, eligible, Even(), random.Random(seed))
    live = [c for c, ok in zip(even, eligible, strict=True) if ok]
    assert sum(live) == total
    assert max(live) - min(live) <= 1


def test_custom_fleets() -> None:
    fleet = Fleet(
        FleetSpec(regions=("cn-beijing", "us-east-1"), services_per_region=(3, 5), total_instances=200), 1
    )
    assert fleet.region_ids() == ["cn-beijing", "us-east-1"]
    assert [len(s.by_name) for s in fleet.regions.values()] == [3, 5]
    assert fleet.instance_count == 200
    many = FleetSpec(regions=20, services_per_region=1, total_instances=20)
    assert many.region_ids()[-1] == "xx-sim-19"
    explicit = Fleet(FleetSpec(regions=1, instance_counts=((0, 250, 1),)), 1)
    assert [s.live_count for s in explicit.live_services()] == [0, 250, 1]
    assert explicit.live_services()[0].status == "Stopped"
    assert all(s.status != "Stopped" for s in explicit.live_services()[1:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"regions": 0},
        {"regions": ("nowhere",)},
        {"regions": ("cn-beijing", "cn-beijing")},
        {"regions": 1, "instance_counts": ((1,), (2,))},
        {"regions": 1, "instance_counts": ((-1,),)},
        {"regions": 2, "services_per_region": (1,)},
        {"total_instances": -5},
        {"regions": 1, "services_per_region": 1, "service_names": (("a", "b"),)},
        {"regions": 1, "services_per_region": 2, "service_names": (("a", "a"),)},
    ],
)
def test_bad_specs_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FleetSpec(**kwargs)  # type: ignore[arg-type]


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="small"):
        preset("huge")


def test_pod_suffixes_are_distinct() -> None:
    values = range(0, 27**5, 27**5 // 5_000)
    assert len({pod_suffix(v) for v in values}) == len(values)
