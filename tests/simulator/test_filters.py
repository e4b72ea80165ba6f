"""Every ListServiceInstances and ListServices filter returns exactly the matching subset.

The expected subsets are computed here, in plain Python over the simulator's ground truth
(``expected_records``), independently of the simulator's own matching code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from scanner.simulator import Simulator
from tests.simulator.helpers import RawClient

pytestmark = pytest.mark.asyncio


def instances_of(sim: Simulator, region: str, service: str) -> list[dict[str, Any]]:
    return [i for r, s, i, _ in sim.expected_records() if (r, s) == (region, service)]


def services_of(sim: Simulator, region: str) -> list[dict[str, Any]]:
    return [s.render_service() for s in sim.fleet.region(region).by_name.values()]


def biggest(sim: Simulator, region: str) -> str:
    return max(sim.fleet.region(region).by_name.values(), key=lambda s: s.live_count).name


InstanceCase = tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any], str], bool]]

INSTANCE_CASES: list[InstanceCase] = [
    ("InstanceType", lambda i: i["InstanceType"], lambda i, v: i["InstanceType"] == v),
    ("InstanceStatus", lambda i: i["Status"], lambda i, v: i["Status"] == v),
    ("InstanceIP", lambda i: i["InnerIP"], lambda i, v: i["InnerIP"] == v),
    ("InstanceName", lambda i: i["InstanceName"], lambda i, v: i["InstanceName"] == v),
    ("HostIP", lambda i: i["HostIP"], lambda i, v: i["HostIP"] == v),
    ("ResourceType", lambda i: i["ResourceType"], lambda i, v: i["ResourceType"] == v),
    ("Role", lambda i: i["Role"], lambda i, v: i["Role"] == v),
    ("IsSpot", lambda i: str(i["IsSpot"]), lambda i, v: i["IsSpot"] == (v.lower() == "true")),
    (
        "Filter",
        lambda i: i["InnerIP"].rsplit(".", 1)[0],
        lambda i, v: any(
            v.lower() in i[f].lower() for f in ("InstanceName", "InnerIP", "HostIP", "InstanceType")
        ),
    ),
]


@pytest.mark.parametrize(("param", "value_of", "matches"), INSTANCE_CASES, ids=[c[0] for c in INSTANCE_CASES])
async def test_instance_filter_returns_exactly_the_matches(
    sim: Simulator,
    raw: RawClient,
    param: str,
    value_of: Callable[[dict[str, Any]], str],
    matches: Callable[[dict[str, Any], str], bool],
) -> None:
    region = sim.regions[0]
    name = biggest(sim, region)
    instances = instances_of(sim, region, name)
    # Several values per filter, each taken from a real instance (so every subset is non-empty).
    values = sorted({value_of(instances[k]) for k in range(0, len(instances), max(1, len(instances) // 5))})
    for value in values:
        expected = [i for i in instances if matches(i, value)]
        assert expected
        got = await raw.all_instances(region, name, {param: value})
        assert got == expected, (param, value)  # same objects, same (start-time) order


async def test_instance_filters_combine_and_can_match_nothing(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    name = biggest(sim, region)
    instances = instances_of(sim, region, name)
    status, resource = instances[0]["Status"], instances[0]["ResourceType"]
    expected = [
        i for i in instances if i["Status"] == status and i["ResourceType"] == resource and not i["IsSpot"]
    ]
    got = await raw.all_instances(
        region, name, {"InstanceStatus": status, "ResourceType": resource, "IsSpot": "false", "Order": "desc"}
    )
    assert got == expected[::-1]
    assert await raw.all_instances(region, name, {"InstanceName": "nobody"}) == []
    assert await raw.all_instances(region, name, {"Filter": "ZZZ-no-such"}) == []


@pytest.mark.parametrize("spelling", ["true", "True", "false", "False"])
async def test_is_spot_spellings(sim: Simulator, raw: RawClient, spelling: str) -> None:
    region = sim.regions[0]
    name = biggest(sim, region)
    expected = [i for i in instances_of(sim, region, name) if i["IsSpot"] == (spelling.lower() == "true")]
    assert await raw.all_instances(region, name, {"IsSpot": spelling}) == expected


async def test_filtered_listing_pages_and_sorts(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    name = biggest(sim, region)
    expected = [i for i in instances_of(sim, region, name) if i["Status"] == "Running"]
    pages = []
    for page in (1, 2, 3):
        reply = await raw.instances(
            region,
            name,
            {"InstanceStatus": "Running", "PageNumber": str(page), "PageSize": "7", "Order": "desc"},
        )
        body = reply.json()
        assert body["TotalCount"] == len(expected)
        pages += body["Instances"]
    assert pages == expected[::-1][:21]


ServiceCase = tuple[str, Callable[[dict[str, Any]], str | None], Callable[[dict[str, Any], str], bool]]


def _config_type(service: dict[str, Any]) -> str:
    return str(orjson.loads(service["ServiceConfig"])["metadata"]["type"])


def _resource_type(service: dict[str, Any]) -> str:
    return "DedicatedResource" if service["Resource"] else "PublicResource"


SERVICE_CASES: list[ServiceCase] = [
    ("ServiceStatus", lambda s: s["Status"], lambda s, v: s["Status"] == v),
    ("ServiceType", _config_type, lambda s, v: _config_type(s) == v),
    ("GroupName", lambda s: s["ServiceGroup"], lambda s, v: s["ServiceGroup"] == v),
    ("ResourceName", lambda s: s["Resource"] or None, lambda s, v: v in (s["Resource"], s["ResourceAlias"])),
    (
        "ResourceName",
        lambda s: s["ResourceAlias"] or None,
        lambda s, v: v in (s["Resource"], s["ResourceAlias"]),
    ),
    ("WorkspaceId", lambda s: s["WorkspaceId"] or None, lambda s, v: s["WorkspaceId"] == v),
    ("ServiceName", lambda s: s["ServiceName"], lambda s, v: s["ServiceName"] == v),
    ("ServiceUid", lambda s: s["ServiceUid"], lambda s, v: s["ServiceUid"] == v),
    ("QuotaId", lambda s: s["QuotaId"] or None, lambda s, v: s["QuotaId"] == v),
    ("Gateway", lambda s: s["Gateway"] or None, lambda s, v: s["Gateway"] == v),
    ("ParentServiceUid", lambda s: s["ParentUid"] or None, lambda s, v: s["ParentUid"] == v),
    ("Role", lambda s: s["Role"], lambda s, v: s["Role"] == v),
    ("ResourceType", _resource_type, lambda s, v: _resource_type(s) == v),
    ("Filter", lambda s: s["ServiceName"][3:6].upper(), lambda s, v: v.lower() in s["ServiceName"].lower()),
    (
        "Label",
        lambda s: orjson.dumps({lb["LabelKey"]: lb["LabelValue"] for lb in s["Labels"][:2]}).decode(),
        lambda s, v: all(
            {lb["LabelKey"]: lb["LabelValue"] for lb in s["Labels"]}.get(k) == w
            for k, w in orjson.loads(v).items()
        ),
    ),
]


@pytest.mark.parametrize(("param", "value_of", "matches"), SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
async def test_service_filter_returns_exactly_the_matches(
    param: str,
    value_of: Callable[[dict[str, Any]], str | None],
    matches: Callable[[dict[str, Any], str], bool],
) -> None:
    async with Simulator(preset="medium", seed=4) as sim:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            raw = RawClient(session, sim)
            region = sim.regions[0]
            services = services_of(sim, region)
            values = sorted({v for s in services if (v := value_of(s)) is not None})[:6]
            assert values
            for value in values:
                expected = {s["ServiceUid"] for s in services if matches(s, value)}
                assert expected
                got = await raw.all_services(region, {param: value})
                assert {s["ServiceUid"] for s in got} == expected, (param, value)
                # Filtered results keep the default order: newest first.
                create_times = [s["CreateTime"] for s in got]
                assert create_times == sorted(create_times, reverse=True)


async def test_service_sort_and_order(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    for sort in ("CreateTime", "UpdateTime", "ServiceName", "TotalInstance", "Memory"):
        ascending = await raw.all_services(region, {"Sort": sort, "Order": "asc"})
        descending = await raw.all_services(region, {"Sort": sort, "Order": "desc"})
        default_order = await raw.all_services(region, {"Sort": sort})
        keys = [s[sort] for s in ascending]
        assert keys == sorted(keys)
        assert descending == ascending[::-1] == default_order


async def test_label_needs_every_pair(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    services = services_of(sim, region)
    env = services[0]["Labels"][0]["LabelValue"]
    team = services[0]["Labels"][1]["LabelValue"]
    both = {
        s["ServiceUid"]
        for s in services
        if {"env": env, "team": team}.items()
        <= {lb["LabelKey"]: lb["LabelValue"] for lb in s["Labels"]}.items()
    }
    got = await raw.all_services(region, {"Label": orjson.dumps({"env": env, "team": team}).decode()})
    assert {s["ServiceUid"] for s in got} == both
    assert await raw.all_services(region, {"Label": '{"env":"nowhere"}'}) == []
