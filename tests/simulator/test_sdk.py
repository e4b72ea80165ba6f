"""The official SDK against the simulator: every operation and parameter, every field, the errors.

The sync client runs in a worker thread (the simulator serves on the test's event loop); the
async client is awaited directly.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from alibabacloud_eas20210701 import models as eas_models
from alibabacloud_tea_openapi.exceptions import ClientException
from Tea.exceptions import TeaException

from scanner.eas.params import INSTANCE_FIELDS, SERVICE_FIELDS
from scanner.simulator import AccessKey, FleetSpec, Simulator
from tests.simulator.helpers import RawClient, sdk_client

pytestmark = pytest.mark.asyncio


def biggest_service(sim: Simulator, region: str) -> str:
    return max(sim.fleet.region(region).by_name.values(), key=lambda s: s.live_count).name


def assert_all_instance_fields(instance: eas_models.ListServiceInstancesResponseBodyInstances) -> None:
    data = instance.to_map()
    assert set(data) == set(INSTANCE_FIELDS)
    missing = [name for name in INSTANCE_FIELDS if data[name] is None]
    assert not missing, missing


def assert_all_service_fields(service: eas_models.Service) -> None:
    data = service.to_map()
    assert set(data) == set(SERVICE_FIELDS)
    missing = [name for name in SERVICE_FIELDS if data[name] is None]
    assert not missing, missing
    assert service.labels
    assert all(label.label_key and label.label_value for label in service.labels)
    assert json.loads(service.service_config)["metadata"]["name"] == service.service_name


async def test_describe_regions_sync_and_async(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region)
    sync = await anyio.to_thread.run_sync(client.describe_regions)
    async_ = await client.describe_regions_async()
    for response in (sync, async_):
        assert [r.region_id for r in response.body.regions] == sim.regions
        assert all(r.region_name for r in response.body.regions)
        assert response.body.request_id == response.headers["x-acs-request-id"]
        assert response.headers["content-type"] == "application/json;charset=utf-8"


async def test_list_services_every_field_and_pages_add_up(sim: Simulator) -> None:
    for region in sim.regions:
        client = sdk_client(sim, region)
        seen: list[str] = []
        total = None
        page = 1
        while total is None or len(seen) < total:
            response = await client.list_services_async(
                eas_models.ListServicesRequest(page_number=page, page_size=7)
            )
            body = response.body
            assert body.page_number == page
            assert body.page_size == 7
            total = body.total_count
            for service in body.services:
                assert_all_service_fields(service)
                assert service.region == region
            seen += [s.service_name for s in body.services]
            page += 1
        expected = sim.fleet.region(region).by_name
        assert sorted(seen) == sorted(expected)
        # Newest first by default.
        create_times = [expected[name].create_epoch for name in seen]
        assert create_times == sorted(create_times, reverse=True)


async def test_list_services_counts_agree_with_instances(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[1]
    client = sdk_client(sim, region)
    body = (await client.list_services_async(eas_models.ListServicesRequest(page_size=100))).body
    for service in body.services:
        instances = await raw.all_instances(region, service.service_name)
        statuses = [i["Status"] for i in instances]
        assert service.total_instance == len(instances)
        assert service.running_instance == statuses.count("Running")
        assert service.pending_instance == statuses.count("Pending")


async def test_list_services_with_every_parameter(sim: Simulator) -> None:
    region = sim.regions[0]
    target = next(s for s in sim.fleet.region(region).by_name.values() if len(s.labels) == 3)
    labels = dict(target.labels)
    request = eas_models.ListServicesRequest(
        filter=target.name[2:8].upper(),
        service_status=target.status,
        service_type=target.service_type,
        group_name=target.group,
        label=labels,
        resource_name=target.resource or None,
        workspace_id=target.workspace_id or None,
        service_name=target.name,
        service_uid=target.service_uid,
        quota_id=target.quota_id or None,
        gateway=target.gateway or None,
        parent_service_uid=target.parent_uid or None,
        role=target.role,
        resource_type=target.resource_type,
        sort="CreateTime",
        order="asc",
        page_number=1,
        page_size=10,
    )
    client = sdk_client(sim, region)
    sync = await anyio.to_thread.run_sync(lambda: client.list_services(request))
    async_ = await client.list_services_async(request)
    for response in (sync, async_):
        assert [s.service_name for s in response.body.services] == [target.name]
        assert response.body.total_count == 1
        assert_all_service_fields(response.body.services[0])  # the sync client parses them all too


async def test_list_service_instances_every_field_pages_and_order(sim: Simulator) -> None:
    region = sim.regions[0]
    name = biggest_service(sim, region)
    client = sdk_client(sim, region)
    names: list[str] = []
    start_times: list[str] = []
    page = 1
    total = None
    while total is None or len(names) < total:
        request = eas_models.ListServiceInstancesRequest(
            page_number=page, page_size=30, sort="StartTime", order="asc"
        )
        body = (await client.list_service_instances_async(region, name, request)).body
        assert (body.page_number, body.page_size) == (page, 30)
        total = body.total_count
        for instance in body.instances:
            assert_all_instance_fields(instance)
        names += [i.instance_name for i in body.instances]
        start_times += [i.start_time for i in body.instances]
        page += 1
    assert total == sim.fleet.service(region, name).live_count  # type: ignore[union-attr]
    assert len(set(names)) == total
    assert start_times == sorted(start_times)
    # desc is the exact reverse, and no Sort means the same order as Sort=StartTime.
    desc = await client.list_service_instances_async(
        region, name, eas_models.ListServiceInstancesRequest(page_size=100, order="desc")
    )
    plain = await anyio.to_thread.run_sync(
        lambda: client.list_service_instances(
            region, name, eas_models.ListServiceInstancesRequest(page_size=100)
        )
    )
    assert [i.instance_name for i in desc.body.instances] == names[::-1][:100]
    assert [i.instance_name for i in plain.body.instances] == names[:100]


async def test_the_sync_client_pages_add_up_too(sim: Simulator) -> None:
    region = sim.regions[1]
    name = biggest_service(sim, region)
    client = sdk_client(sim, region)

    def walk() -> tuple[list[str], int, list[str], int]:
        services: list[str] = []
        instances: list[str] = []
        page = 1
        while True:
            body = client.list_services(eas_models.ListServicesRequest(page_number=page, page_size=7)).body
            for service in body.services:
                assert_all_service_fields(service)
            services += [s.service_name for s in body.services]
            if page * 7 >= body.total_count:
                break
            page += 1
        service_total = body.total_count
        page = 1
        while True:
            request = eas_models.ListServiceInstancesRequest(page_number=page, page_size=30)
            ibody = client.list_service_instances(region, name, request).body
            for instance in ibody.instances:
                assert_all_instance_fields(instance)
            instances += [i.instance_name for i in ibody.instances]
            if page * 30 >= ibody.total_count:
                break
            page += 1
        return services, service_total, instances, ibody.total_count

    services, service_total, instances, instance_total = await anyio.to_thread.run_sync(walk)
    assert len(services) == service_total == len(set(services))
    assert sorted(services) == sorted(sim.fleet.region(region).by_name)
    assert len(instances) == instance_total == len(set(instances)) > 30
    assert instance_total == sim.fleet.service(region, name).live_count  # type: ignore[union-attr]


async def test_list_service_instances_with_every_parameter(sim: Simulator) -> None:
    region = sim.regions[0]
    name = biggest_service(sim, region)
    client = sdk_client(sim, region)
    everything = (
        await client.list_service_instances_async(
            region, name, eas_models.ListServiceInstancesRequest(page_size=100)
        )
    ).body.instances
    target = everything[3]
    request = eas_models.ListServiceInstancesRequest(
        filter=target.inner_ip,
        resource_type=target.resource_type,
        instance_type=target.instance_type,
        instance_status=target.status,
        instance_ip=target.inner_ip,
        instance_name=target.instance_name,
        host_ip=target.host_ip,
        is_spot=target.is_spot,
        role=target.role,
        sort="StartTime",
        order="desc",
        page_number=1,
        page_size=5,
    )
    sync = await anyio.to_thread.run_sync(lambda: client.list_service_instances(region, name, request))
    async_ = await client.list_service_instances_async(region, name, request)
    for response in (sync, async_):
        assert [i.instance_name for i in response.body.instances] == [target.instance_name]
        assert response.body.total_count == 1
        assert response.body.page_size == 5
        assert_all_instance_fields(response.body.instances[0])
        assert response.body.instances[0].to_map() == target.to_map()


async def test_page_size_is_capped_at_100(sim: Simulator) -> None:
    region = sim.regions[0]
    name = biggest_service(sim, region)
    assert sim.fleet.service(region, name).live_count > 100  # type: ignore[union-attr]
    client = sdk_client(sim, region)
    body = (
        await client.list_service_instances_async(
            region, name, eas_models.ListServiceInstancesRequest(page_size=500)
        )
    ).body
    assert body.page_size == 100
    assert len(body.instances) == 100


async def test_service_names_that_need_encoding() -> None:
    odd = ("svc name/x~y*é", "a+b=c&d'()!")
    spec = FleetSpec(regions=1, instance_counts=((3, 2),), service_names=(odd,))
    async with Simulator(spec=spec, seed=2) as sim:
        region = sim.regions[0]
        client = sdk_client(sim, region)
        for name, count in zip(odd, (3, 2), strict=True):
            request = eas_models.ListServiceInstancesRequest(filter="-", is_spot=False)
            sync = await anyio.to_thread.run_sync(client.list_service_instances, region, name, request)
            async_ = await client.list_service_instances_async(region, name, request)
            expected = [
                i["InstanceName"]
                for _, service_name, i, _ in sim.expected_records()
                if service_name == name and not i["IsSpot"]
            ]
            assert len(expected) <= count
            for response in (sync, async_):
                assert sorted(i.instance_name for i in response.body.instances) == sorted(expected)
                assert all(i.namespace == name for i in response.body.instances)


async def test_a_region_lists_only_its_own_services(sim: Simulator) -> None:
    for region in sim.regions:
        client = sdk_client(sim, region)
        body = (await client.list_services_async(eas_models.ListServicesRequest())).body
        uids = {s.service_uid for s in body.services}
        assert uids == {s.service_uid for s in sim.fleet.region(region).by_name.values()}
        assert {s.region for s in body.services} == {region}


# --- errors ----------------------------------------------------------------------------------------


async def sdk_error(call: Any) -> TeaException:
    with pytest.raises(TeaException) as info:
        await call
    return info.value


async def test_wrong_secret_is_rejected(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region, access_key_secret="not-the-secret")
    error = await sdk_error(client.describe_regions_async())
    assert isinstance(error, ClientException)
    assert error.code == "SignatureDoesNotMatch"
    assert error.status_code == 400
    sync_error: TeaException | None = None
    try:
        await anyio.to_thread.run_sync(client.describe_regions)
    except TeaException as exc:
        sync_error = exc
    assert sync_error is not None
    assert sync_error.code == "SignatureDoesNotMatch"


async def test_unknown_access_key_is_rejected(sim: Simulator) -> None:
    client = sdk_client(sim, sim.regions[0], access_key_id="LTAI5tNobodyKnowsMe00000")
    error = await sdk_error(client.describe_regions_async())
    assert (error.code, error.status_code) == ("InvalidAccessKeyId.NotFound", 404)


async def test_sts_token_client_works_and_wrong_token_fails() -> None:
    sts = AccessKey("STS.NUtestkey", "sts-secret", "CAISsts-token-value")
    async with Simulator(preset="small", seed=1, extra_keys=[sts]) as sim:
        region = sim.regions[0]
        ok = sdk_client(sim, region, access_key_id=sts.access_key_id, access_key_secret="sts-secret",
                        security_token="CAISsts-token-value")  # fmt: skip
        response = await ok.list_services_async(eas_models.ListServicesRequest(page_size=1))
        assert response.body.total_count == len(sim.fleet.region(region).by_name)
        sync = await anyio.to_thread.run_sync(ok.describe_regions)
        assert sync.body.regions

        wrong = sdk_client(sim, region, access_key_id=sts.access_key_id, access_key_secret="sts-secret",
                           security_token="CAISsomething-else")  # fmt: skip
        error = await sdk_error(wrong.describe_regions_async())
        assert error.code == "InvalidSecurityToken.MismatchWithAccessKey"

        missing = sdk_client(sim, region, access_key_id=sts.access_key_id, access_key_secret="sts-secret")
        error = await sdk_error(missing.describe_regions_async())
        assert error.code == "InvalidSecurityToken.MismatchWithAccessKey"


async def test_legacy_roa_signature_is_accepted(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region, signature_algorithm="v2")
    response = await anyio.to_thread.run_sync(client.describe_regions)
    assert [r.region_id for r in response.body.regions] == sim.regions


async def test_tampered_requests_are_rejected(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    name = biggest_service(sim, region)
    path = f"/api/v2/services/{region}/{name}/instances"
    url, headers = raw.signed(region, "ListServiceInstances", path, {"PageSize": "5"})
    tampered = url.with_query({"PageSize": "6"})
    reply = await raw.send(tampered, headers)
    assert (reply.status, reply.json()["Code"]) == (400, "SignatureDoesNotMatch")
    url, headers = raw.signed(region, "ListServiceInstances", path, {"PageSize": "5"})
    headers["x-acs-date"] = "2020-01-01T00:00:00Z"
    reply = await raw.send(url, headers)
    assert reply.json()["Code"] == "SignatureDoesNotMatch"


async def test_a_replayed_nonce_is_rejected(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    url, headers = raw.signed(region, "DescribeRegions", "/api/v2/regions", {})
    assert (await raw.send(url, headers)).status == 200
    reply = await raw.send(url, headers)
    assert (reply.status, reply.json()["Code"]) == (400, "SignatureNonceUsed")


async def test_action_header_must_match_the_route(sim: Simulator, raw: RawClient) -> None:
    reply = await raw.call(sim.regions[0], "ListServices", "/api/v2/regions")
    assert (reply.status, reply.json()["Code"]) == (404, "InvalidAction.NotFound")
    assert "x-acs-action" in reply.json()["Message"]


async def test_unsigned_and_unknown_routes(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    async with raw.session.get(sim.endpoints[region] + "/api/v2/regions") as response:
        body = await response.json(content_type=None)
        assert (response.status, body["Code"]) == (400, "MissingAuthorization")
        assert body["RequestId"] == response.headers["x-acs-request-id"]
    reply = await raw.call(region, "DescribeRegions", "/api/v2/nowhere")
    assert (reply.status, reply.json()["Code"]) == (404, "InvalidAction.NotFound")


async def test_unknown_service_is_404(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region)
    error = await sdk_error(
        client.list_service_instances_async(
            region, "no_such_service", eas_models.ListServiceInstancesRequest()
        )
    )
    assert (error.code, error.status_code) == ("InvalidService.NotFound", 404)
    assert "no_such_service" in error.message


async def test_cluster_id_of_another_region_is_400(sim: Simulator, raw: RawClient) -> None:
    first, second = sim.regions
    name = biggest_service(sim, first)
    reply = await raw.instances(first, name, cluster=second)
    body = reply.json()
    assert (reply.status, body["Code"]) == (400, "InvalidParameter")
    assert "ClusterId" in body["Message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"PageSize": "0"}, "PageSize"),
        ({"PageNumber": "x"}, "PageNumber"),
        ({"IsSpot": "maybe"}, "IsSpot"),
        ({"Role": "Boss"}, "Role"),
        ({"ResourceType": "Cheap"}, "ResourceType"),
        ({"Sort": "Name"}, "Sort"),
        ({"Order": "sideways"}, "Order"),
    ],
)
async def test_invalid_instance_parameters(
    sim: Simulator, raw: RawClient, params: dict[str, str], named: str
) -> None:
    region = sim.regions[0]
    reply = await raw.instances(region, biggest_service(sim, region), params)
    body = reply.json()
    assert (reply.status, body["Code"]) == (400, "InvalidParameter")
    assert named in body["Message"]
    assert set(body) == {"RequestId", "Code", "Message"}
    assert body["RequestId"] == reply.headers["x-acs-request-id"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"ServiceStatus": "Sleeping"}, "ServiceStatus"),
        ({"ServiceType": "Quantum"}, "ServiceType"),
        ({"Label": "not json"}, "Label"),
        ({"Sort": "Colour"}, "Sort"),
        ({"Order": "up"}, "Order"),
        ({"PageSize": "-1"}, "PageSize"),
    ],
)
async def test_invalid_service_parameters(
    sim: Simulator, raw: RawClient, params: dict[str, str], named: str
) -> None:
    reply = await raw.services(sim.regions[0], params)
    body = reply.json()
    assert (reply.status, body["Code"]) == (400, "InvalidParameter")
    assert named in body["Message"]


async def test_invalid_parameter_through_the_sdk(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region)
    error = await sdk_error(
        client.list_services_async(eas_models.ListServicesRequest(service_status="Sleeping"))
    )
    assert (error.code, error.status_code) == ("InvalidParameter", 400)
    assert "ServiceStatus" in error.message
