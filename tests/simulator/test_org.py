"""The organisation simulator driven by the official STS, ResourceManager and EAS SDKs over loopback.

AssumeRole and GetCallerIdentity (STS), ListAccounts / ListAccountsForParent paging
(ResourceManager), then the assumed temporary credentials list that member's EAS fleet; tokens
expire; the management key sees only the management account.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import pytest
import pytest_asyncio
from alibabacloud_eas20210701 import models as eas_models
from alibabacloud_eas20210701.client import Client as EasClient
from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_resourcemanager20200331.client import Client as RmClient
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from scanner.simulator import Simulator
from scanner.simulator.digest import account_key_digests, record_key_digest
from scanner.simulator.org import SUCCESS_STATUSES, Member
from tests.simulator.helpers import RawClient

pytestmark = pytest.mark.asyncio

ROLE = "ResourceDirectoryAccountAccessRole"


class Credentials:
    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str | None = None) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token


def config(endpoint: str | None, creds: Credentials) -> Config:
    assert endpoint is not None
    return Config(
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token,
        endpoint=endpoint.removeprefix("http://"),
        protocol="HTTP",
    )


def management(sim: Simulator) -> Credentials:
    return Credentials(sim.access_key_id, sim.access_key_secret)


def sts(sim: Simulator, creds: Credentials | None = None) -> StsClient:
    return StsClient(config(sim.sts_endpoint, creds or management(sim)))


def rm(sim: Simulator, creds: Credentials | None = None) -> RmClient:
    return RmClient(config(sim.resourcemanager_endpoint, creds or management(sim)))


def eas(sim: Simulator, region: str, creds: Credentials) -> EasClient:
    return EasClient(config(sim.endpoints[region], creds))


def role_arn(account_id: str, role: str = ROLE) -> str:
    return f"acs:ram::{account_id}:role/{role}"


async def assume(sim: Simulator, account_id: str, **request: Any) -> sts_models.AssumeRoleResponseBody:
    fields: dict[str, Any] = {"role_arn": role_arn(account_id), "role_session_name": "eas-fleet-scanner"}
    fields.update(request)
    response = await sts(sim).assume_role_async(sts_models.AssumeRoleRequest(**fields))
    return response.body


def temporary(body: sts_models.AssumeRoleResponseBody) -> Credentials:
    c = body.credentials
    return Credentials(c.access_key_id, c.access_key_secret, c.security_token)


async def sdk_error(call: Any) -> TeaException:
    with pytest.raises(TeaException) as info:
        await call
    return info.value


def members(sim: Simulator) -> list[Member]:
    assert sim.org is not None
    return sim.org.members


def scannable(sim: Simulator) -> list[Member]:
    return [m for m in members(sim) if m.scannable]


@pytest_asyncio.fixture
async def org_sim() -> AsyncIterator[Simulator]:
    async with Simulator(preset="org-small", seed=5) as simulator:
        yield simulator


# --- STS -------------------------------------------------------------------------------------


async def test_caller_identity_of_the_management_user_sync_and_async(org_sim: Simulator) -> None:
    client = sts(org_sim)
    sync = await anyio.to_thread.run_sync(client.get_caller_identity)
    async_ = await client.get_caller_identity_async()
    assert org_sim.org is not None
    for response in (sync, async_):
        body = response.body
        assert body.account_id == org_sim.org.management_account_id
        assert body.identity_type == "RAMUser"
        assert body.arn == f"acs:ram::{body.account_id}:user/eas-fleet-scanner"
        assert body.request_id == response.headers["x-acs-request-id"]


async def test_assume_role_returns_temporary_credentials_for_the_member(org_sim: Simulator) -> None:
    member = scannable(org_sim)[0]
    before = datetime.now(UTC).replace(microsecond=0)
    body = await assume(org_sim, member.account_id, duration_seconds=1800)
    creds = body.credentials
    assert creds.access_key_id.startswith("STS.")
    assert creds.access_key_secret
    assert creds.security_token
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", creds.expiration)
    expiration = datetime.strptime(creds.expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=1799) <= expiration <= before + timedelta(seconds=1802)
    assert body.assumed_role_user.arn == f"{role_arn(member.account_id)}/eas-fleet-scanner"
    assert body.assumed_role_user.assumed_role_id.endswith(":eas-fleet-scanner")
    identity = (await sts(org_sim, temporary(body)).get_caller_identity_async()).body
    assert identity.account_id == member.account_id
    assert identity.identity_type == "AssumedRoleUser"
    assert identity.arn == f"acs:ram::{member.account_id}:assumed-role/{ROLE}/eas-fleet-scanner"
    assert identity.role_id == body.assumed_role_user.assumed_role_id.split(":")[0]
    assert member.assume_role_calls == 1


async def test_assume_role_sync_client_and_case_insensitive_role_name(org_sim: Simulator) -> None:
    member = scannable(org_sim)[1]
    request = sts_models.AssumeRoleRequest(
        role_arn=role_arn(member.account_id, ROLE.lower()), role_session_name="a.b@c-d_e"
    )
    response = await anyio.to_thread.run_sync(sts(org_sim).assume_role, request)
    assert response.body.credentials.access_key_id.startswith("STS.")


async def test_token_lifetime_knob_shortens_what_was_asked(org_sim: Simulator) -> None:
    org_sim.set_org(token_ttl=20)
    body = await assume(org_sim, scannable(org_sim)[0].account_id, duration_seconds=3600)
    expiration = datetime.strptime(body.credentials.expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expiration - datetime.now(UTC) < timedelta(seconds=21)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"duration_seconds": 899}, 400, "InvalidParameter.DurationSeconds"),
        ({"duration_seconds": 3601}, 400, "InvalidParameter.DurationSeconds"),
        ({"role_session_name": "a"}, 400, "InvalidParameter.RoleSessionName"),
        ({"role_session_name": "has space"}, 400, "InvalidParameter.RoleSessionName"),
        ({"role_arn": "acs:ram::123:user/x"}, 400, "InvalidParameter.RoleArn"),
        ({"role_arn": role_arn("1234567890123456")}, 404, "EntityNotExist.Role"),
        ({"external_id": "x"}, 400, "InvalidParameter.ExternalId"),
    ],
)
async def test_assume_role_parameters_refused_as_sts_does(
    org_sim: Simulator, fields: dict[str, Any], status: int, code: str
) -> None:
    error = await sdk_error(assume(org_sim, scannable(org_sim)[0].account_id, **fields))
    assert (error.code, error.status_code) == (code, status)


async def test_a_role_name_the_members_do_not_have(org_sim: Simulator) -> None:
    account = scannable(org_sim)[0].account_id
    error = await sdk_error(assume(org_sim, account, role_arn=role_arn(account, "EasInventoryReader")))
    assert (error.code, error.status_code) == ("EntityNotExist.Role", 404)
    assert role_arn(account, "EasInventoryReader") in error.message


# --- ResourceManager ---------------------------------------------------------------------------


async def test_list_accounts_pages_add_up(org_sim: Simulator) -> None:
    client = rm(org_sim)
    seen: list[rm_models.ListAccountsResponseBodyAccountsAccount] = []
    for page in range(1, 5):
        body = (
            await client.list_accounts_async(rm_models.ListAccountsRequest(page_number=page, page_size=5))
        ).body
        assert (body.page_number, body.page_size, body.total_count) == (page, 5, 12)
        seen += body.accounts.account
    assert [a.account_id for a in seen] == [m.account_id for m in members(org_sim)]
    assert org_sim.org is not None
    for account in seen:
        assert re.fullmatch(r"[1-9]\d{15}", account.account_id)
        assert account.display_name
        assert account.type in ("ResourceAccount", "CloudAccount")
        assert account.folder_id in org_sim.org.folder_ids
        assert account.resource_directory_id == org_sim.org.resource_directory_id
        assert account.resource_directory_path.endswith(f"/{account.folder_id}/{account.account_id}") or (
            account.resource_directory_path.endswith(f"{org_sim.org.root_folder_id}/{account.account_id}")
        )
        assert account.tags is None
    statuses = [a.status for a in seen]
    assert statuses.count("CreateFailed") == 1  # org-small: one member in a non-success status
    assert all(s in SUCCESS_STATUSES for s in statuses if s != "CreateFailed")
    join_times = [a.join_time for a in seen]
    assert join_times == sorted(join_times)


async def test_list_accounts_default_page_size_tags_and_tag_filter(org_sim: Simulator) -> None:
    client = rm(org_sim)
    body = (await client.list_accounts_async(rm_models.ListAccountsRequest(include_tags=True))).body
    assert (body.page_size, len(body.accounts.account), body.total_count) == (10, 10, 12)
    tags = {t.key: t.value for t in body.accounts.account[0].tags.tag}
    assert set(tags) == {"env", "team"}
    request = rm_models.ListAccountsRequest(
        page_size=100, tag=[rm_models.ListAccountsRequestTag(key="env", value=tags["env"])]
    )
    filtered = (await client.list_accounts_async(request)).body
    expected = [m.account_id for m in members(org_sim) if dict(m.tags)["env"] == tags["env"]]
    assert [a.account_id for a in filtered.accounts.account] == expected
    assert filtered.total_count == len(expected)


async def test_list_accounts_page_cap_and_bad_page_size(org_sim: Simulator) -> None:
    org_sim.set_org(accounts_page_cap=4)
    client = rm(org_sim)
    body = (await client.list_accounts_async(rm_models.ListAccountsRequest(page_size=100))).body
    assert (body.page_size, len(body.accounts.account), body.total_count) == (4, 4, 12)
    past = (await client.list_accounts_async(rm_models.ListAccountsRequest(page_number=4, page_size=4))).body
    assert (past.accounts.account, past.total_count) == ([], 12)
    error = await sdk_error(client.list_accounts_async(rm_models.ListAccountsRequest(page_size=101)))
    assert (error.code, error.status_code) == ("InvalidParameter.PageSize", 400)


async def test_list_accounts_for_parent_covers_every_folder_once(org_sim: Simulator) -> None:
    org = org_sim.org
    assert org is not None
    client = rm(org_sim)
    found: list[str] = []
    for folder in [org.root_folder_id, *(f.folder_id for f in org.folders)]:
        request = rm_models.ListAccountsForParentRequest(parent_folder_id=folder, page_size=100)
        body = (await client.list_accounts_for_parent_async(request)).body
        assert all(a.folder_id == folder for a in body.accounts.account)
        assert body.total_count == len(body.accounts.account)
        found += [a.account_id for a in body.accounts.account]
    assert sorted(found) == sorted(m.account_id for m in members(org_sim))
    target = members(org_sim)[3]
    request = rm_models.ListAccountsForParentRequest(
        parent_folder_id=target.folder_id, query_keyword=target.display_name.upper()
    )
    body = (await client.list_accounts_for_parent_async(request)).body
    assert [a.account_id for a in body.accounts.account] == [target.account_id]


@pytest.mark.parametrize(
    ("folder", "status", "code"),
    [
        ("fd-0000000000", 404, "EntityNotExists.Folder"),
        ("folder-1", 400, "InvalidParameter.FolderId"),
        (None, 400, "MissingParameter.ParentFolderId"),
    ],
)
async def test_list_accounts_for_parent_refusals(
    org_sim: Simulator, folder: str | None, status: int, code: str
) -> None:
    request = rm_models.ListAccountsForParentRequest(parent_folder_id=folder)
    error = await sdk_error(rm(org_sim).list_accounts_for_parent_async(request))
    assert (error.code, error.status_code) == (code, status)


async def test_only_the_management_account_lists_and_assumes(org_sim: Simulator) -> None:
    member = scannable(org_sim)[0]
    creds = temporary(await assume(org_sim, member.account_id))
    error = await sdk_error(rm(org_sim, creds).list_accounts_async(rm_models.ListAccountsRequest()))
    assert (error.code, error.status_code) == ("EntityNotExists.ResourceDirectory", 404)
    other = scannable(org_sim)[1].account_id
    request = sts_models.AssumeRoleRequest(role_arn=role_arn(other), role_session_name="chain")
    error = await sdk_error(sts(org_sim, creds).assume_role_async(request))
    assert (error.code, error.status_code) == ("NoPermission", 403)


# --- EAS with the temporary credentials ----------------------------------------------------------


async def list_member_keys(sim: Simulator, creds: Credentials) -> set[tuple[str, str, str]]:
    keys: set[tuple[str, str, str]] = set()
    async with aiohttp.ClientSession() as session:
        raw = RawClient(session, sim, creds.access_key_id, creds.access_key_secret, creds.security_token)
        for region in sim.regions:
            for service in await raw.all_services(region):
                for instance in await raw.all_instances(region, service["ServiceName"]):
                    keys.add((region, service["ServiceName"], instance["InstanceName"]))
    return keys


async def test_assumed_credentials_list_that_members_fleet(org_sim: Simulator) -> None:
    for member in scannable(org_sim)[:3]:
        creds = temporary(await assume(org_sim, member.account_id))
        region = org_sim.regions[0]
        client = eas(org_sim, region, creds)
        body = (await client.list_services_async(eas_models.ListServicesRequest(page_size=100))).body
        assert org_sim.org is not None
        fleet = org_sim.org.tenant(member.account_id).fleet
        assert {s.service_name for s in body.services} == set(fleet.region(region).by_name)
        assert all(s.caller_uid == member.account_id for s in body.services)
        keys = await list_member_keys(org_sim, creds)
        assert keys == org_sim.current_keys(member.account_id)
        assert record_key_digest(keys) == org_sim.fleet_digest(account=member.account_id)
        assert len(keys) == member.instances
    assert org_sim.org is not None
    assert sum(m.requests for m in members(org_sim)) > 0


async def test_members_fleets_differ_and_the_management_key_sees_its_own(org_sim: Simulator) -> None:
    a, b = scannable(org_sim)[:2]
    assert org_sim.current_keys(a.account_id) != org_sim.current_keys(b.account_id)
    region = org_sim.regions[0]
    body = (
        await eas(org_sim, region, management(org_sim)).list_services_async(eas_models.ListServicesRequest())
    ).body
    assert body.total_count == 0  # the management account has no EAS services in the org presets


async def test_sdk_instance_listing_with_temporary_credentials(org_sim: Simulator) -> None:
    member = max(scannable(org_sim), key=lambda m: m.instances)
    creds = temporary(await assume(org_sim, member.account_id))
    assert org_sim.org is not None
    fleet = org_sim.org.tenant(member.account_id).fleet
    region, service = max(
        ((r, s) for r in fleet.regions for s in fleet.region(r).by_name.values()),
        key=lambda rs: rs[1].live_count,
    )
    client = eas(org_sim, region, creds)
    request = eas_models.ListServiceInstancesRequest(page_number=1, page_size=100)
    body = (await client.list_service_instances_async(region, service.name, request)).body
    assert body.total_count == service.live_count
    assert len(body.instances) == min(100, service.live_count)


# --- tokens ----------------------------------------------------------------------------------


async def test_expired_tokens_are_refused_everywhere(org_sim: Simulator) -> None:
    member = scannable(org_sim)[0]
    creds = temporary(await assume(org_sim, member.account_id))
    region = org_sim.regions[0]
    await eas(org_sim, region, creds).list_services_async(eas_models.ListServicesRequest())
    assert org_sim.expire_tokens(member.account_id) == 1
    error = await sdk_error(eas(org_sim, region, creds).list_services_async(eas_models.ListServicesRequest()))
    assert (error.code, error.status_code) == ("InvalidSecurityToken.Expired", 400)
    error = await sdk_error(sts(org_sim, creds).get_caller_identity_async())
    assert error.code == "InvalidSecurityToken.Expired"
    fresh = temporary(await assume(org_sim, member.account_id))  # a new token works at once
    await eas(org_sim, region, fresh).list_services_async(eas_models.ListServicesRequest())
    assert member.assume_role_calls == 2


class ShiftedClock:
    """The real clock, plus a shift a test moves forward (only ``wall`` is used: signatures, tokens)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def monotonic(self) -> float:
        return 0.0

    def wall(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.shift)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def test_a_token_expires_at_its_expiration() -> None:
    clock = ShiftedClock()
    async with Simulator(preset="org-small", seed=2, auth_clock=clock) as sim:
        sim.set_org(token_ttl=30)
        creds = temporary(await assume(sim, scannable(sim)[0].account_id))
        region = sim.regions[0]
        clock.shift = 25.0
        await eas(sim, region, creds).list_services_async(eas_models.ListServicesRequest())
        clock.shift = 32.0
        error = await sdk_error(eas(sim, region, creds).list_services_async(eas_models.ListServicesRequest()))
        assert error.code == "InvalidSecurityToken.Expired"


async def test_temporary_keys_need_their_own_token(org_sim: Simulator) -> None:
    a, b = scannable(org_sim)[:2]
    creds_a = temporary(await assume(org_sim, a.account_id))
    creds_b = temporary(await assume(org_sim, b.account_id))
    region = org_sim.regions[0]
    request = eas_models.ListServicesRequest()
    no_token = Credentials(creds_a.access_key_id, creds_a.access_key_secret)
    error = await sdk_error(eas(org_sim, region, no_token).list_services_async(request))
    assert (error.code, error.status_code) == ("MissingSecurityToken", 400)
    swapped = Credentials(creds_a.access_key_id, creds_a.access_key_secret, creds_b.security_token)
    error = await sdk_error(eas(org_sim, region, swapped).list_services_async(request))
    assert error.code == "InvalidSecurityToken.MismatchWithAccessKey"
    unknown = Credentials("STS.NUnknownKey0000000000000", "secret", "CAIStoken")
    error = await sdk_error(sts(org_sim, unknown).get_caller_identity_async())
    assert (error.code, error.status_code) == ("InvalidAccessKeyId.NotFound", 404)


async def test_a_multi_account_listing_matches_the_org_digests(org_sim: Simulator) -> None:
    keys: list[tuple[str, str, str, str]] = []
    for member in scannable(org_sim):
        creds = temporary(await assume(org_sim, member.account_id))
        keys += [(member.account_id, *key) for key in await list_member_keys(org_sim, creds)]
    digests = account_key_digests(keys)
    expected = org_sim.org_digests()
    assert digests == {account: expected[account] for account in digests}
    assert set(expected) - set(digests) == set()  # org-small: every success member is scannable
