"""The organisation's knobs refuse as the real APIs do; RPC protocol checks; admin routes; presets."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
import pytest_asyncio
from alibabacloud_eas20210701 import models as eas_models
from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_sts20150401 import models as sts_models

from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, format_date, sign
from scanner.errors import ConfigError
from scanner.simulator import FleetSpec, OrgSpec, Simulator
from scanner.simulator.org import ORG_PRESETS, SUCCESS_STATUSES
from scanner.simulator.spec import Even
from scanner.simulator.standalone import build_parser, simulator_from_args
from scanner.testing import FakeClock
from tests.simulator.helpers import RawClient
from tests.simulator.test_org import (
    Credentials,
    assume,
    eas,
    members,
    rm,
    role_arn,
    scannable,
    sdk_error,
    sts,
    temporary,
)

pytestmark = pytest.mark.asyncio

KNOBS = OrgSpec(
    members=10, total_instances=400, non_success=2, missing_role=1, eas_denied=1, external_id=None
)
_nonces = itertools.count()


@pytest_asyncio.fixture
async def knob_sim() -> AsyncIterator[Simulator]:
    async with Simulator(org=KNOBS, seed=9) as simulator:
        yield simulator


def by_flag(sim: Simulator) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"ok": [], "non_success": [], "missing_role": [], "denied": []}
    for m in members(sim):
        if m.status not in ("CreateSuccess", "InviteSuccess", "PromoteSuccess"):
            out["non_success"].append(m.account_id)
        elif not m.role_exists:
            out["missing_role"].append(m.account_id)
        elif m.eas_denied:
            out["denied"].append(m.account_id)
        else:
            out["ok"].append(m.account_id)
    return out


async def test_knobs_pick_distinct_members_from_the_end(knob_sim: Simulator) -> None:
    flags = by_flag(knob_sim)
    ids = [m.account_id for m in members(knob_sim)]
    assert flags["non_success"] == ids[8:]
    assert flags["missing_role"] == ids[7:8]
    assert flags["denied"] == ids[6:7]
    assert len(flags["ok"]) == 6
    assert [m.status for m in members(knob_sim)[8:]] == ["CreateFailed", "CreateVerifying"]
    assert sum(m.instances for m in members(knob_sim)) == 400
    assert all(m.instances == 0 for m in members(knob_sim)[8:])


async def test_missing_role_and_non_success_members_cannot_be_assumed(knob_sim: Simulator) -> None:
    flags = by_flag(knob_sim)
    for account in flags["missing_role"] + flags["non_success"]:
        error = await sdk_error(assume(knob_sim, account))
        assert (error.code, error.status_code) == ("EntityNotExist.Role", 404)
        assert f"acs:ram::{account}:role/" in error.message
    assert members(knob_sim)[7].assume_role_refused == 1


async def test_a_role_denied_eas_gets_forbidden_ram(knob_sim: Simulator) -> None:
    account = by_flag(knob_sim)["denied"][0]
    creds = temporary(await assume(knob_sim, account))  # the role exists: AssumeRole succeeds
    identity = (await sts(knob_sim, creds).get_caller_identity_async()).body
    assert identity.account_id == account
    for region in knob_sim.regions:
        error = await sdk_error(
            eas(knob_sim, region, creds).list_services_async(eas_models.ListServicesRequest())
        )
        assert (error.code, error.status_code) == ("Forbidden.RAM", 403)
    knob_sim.set_member(account, eas_denied=False)
    await eas(knob_sim, knob_sim.regions[0], creds).list_services_async(eas_models.ListServicesRequest())


async def test_a_required_external_id() -> None:
    async with Simulator(org=KNOBS.with_changes(external_id="ext-42"), seed=9) as sim:
        account = by_flag(sim)["ok"][0]
        error = await sdk_error(assume(sim, account))
        assert (error.code, error.status_code) == ("NoPermission", 403)
        error = await sdk_error(assume(sim, account, external_id="ext-41"))
        assert (error.code, error.status_code) == ("NoPermission", 403)
        body = await assume(sim, account, external_id="ext-42")
        assert body.credentials.access_key_id.startswith("STS.")
        # Per member, at run time: another member needs none.
        other = by_flag(sim)["ok"][1]
        sim.set_member(other, external_id=None)
        await assume(sim, other)


async def test_the_assume_role_quota_throttles_the_management_account() -> None:
    clock = FakeClock()
    spec = KNOBS.with_changes(assume_role_rate=2.0, assume_role_burst=2)
    async with Simulator(org=spec, seed=9, clock=clock) as sim:
        ok = by_flag(sim)["ok"]
        await assume(sim, ok[0])
        await assume(sim, ok[1])
        error = await sdk_error(assume(sim, ok[2]))
        assert (error.code, error.status_code) == ("Throttling.User", 400)
        assert "Request was denied due to user flow control." in error.message
        clock.advance(0.5)
        await assume(sim, ok[2])
        assert sim.org_info()["assume_role_throttled"] == 1
        sim.set_org(assume_role_rate=None)
        for account in ok:
            await assume(sim, account)


async def test_each_member_has_its_own_rate_limits(knob_sim: Simulator) -> None:
    clock_free = knob_sim  # the limiter runs on the simulator clock (real time here)
    knob_sim.set_faults(rate_limit=0.001, burst=1)
    a, b = by_flag(clock_free)["ok"][:2]
    creds_a = temporary(await assume(knob_sim, a))
    creds_b = temporary(await assume(knob_sim, b))
    region = knob_sim.regions[0]
    request = eas_models.ListServicesRequest()
    await eas(knob_sim, region, creds_a).list_services_async(request)
    error = await sdk_error(eas(knob_sim, region, creds_a).list_services_async(request))
    assert error.code == "Throttling"
    await eas(knob_sim, region, creds_b).list_services_async(request)  # b has its own bucket
    await eas(knob_sim, knob_sim.regions[1], creds_a).list_services_async(request)  # another region
    # The management account's buckets are its own too.
    management = Credentials(knob_sim.access_key_id, knob_sim.access_key_secret)
    await eas(knob_sim, region, management).list_services_async(request)
    # A member's own limit, at run time.
    knob_sim.set_member(a, rate_limit=1000.0)
    await eas(knob_sim, region, creds_a).list_services_async(request)


async def test_a_region_forbidden_for_one_member_only(knob_sim: Simulator) -> None:
    a, b = by_flag(knob_sim)["ok"][:2]
    creds_a = temporary(await assume(knob_sim, a))
    creds_b = temporary(await assume(knob_sim, b))
    assert knob_sim.org is not None
    region = knob_sim.regions[0]
    knob_sim.org.forbid_region(a, region)
    error = await sdk_error(
        eas(knob_sim, region, creds_a).list_services_async(eas_models.ListServicesRequest())
    )
    assert error.code == "Forbidden.RAM"
    await eas(knob_sim, region, creds_b).list_services_async(eas_models.ListServicesRequest())


# --- the RPC protocol ----------------------------------------------------------------------------


async def rpc(
    session: aiohttp.ClientSession,
    sim: Simulator,
    endpoint: str | None,
    action: str,
    params: Mapping[str, str],
    *,
    version: str = "2015-04-01",
    method: str = "POST",
    path: str = "/",
    body: bytes = b"",
    content_type: str | None = None,
) -> tuple[int, dict[str, object]]:
    """A signed RPC call made by hand (scanner.eas.signing.sign), for what the SDK never sends."""
    assert endpoint is not None
    headers = {
        "host": endpoint.removeprefix("http://"),
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": format_date(datetime.now(UTC)),
        "x-acs-signature-nonce": f"org-nonce-{next(_nonces)}",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256,
    }
    if content_type is not None:
        headers["content-type"] = content_type
    headers["Authorization"] = sign(
        method=method,
        canonical_uri=path,
        params=params,
        headers=headers,
        access_key_id=sim.access_key_id,
        access_key_secret=sim.access_key_secret,
        body_sha256=headers["x-acs-content-sha256"],
    )
    query = canonical_query(params)
    url = f"{endpoint}{path}?{query}" if query else f"{endpoint}{path}"
    async with session.request(method, url, headers=headers, data=body or None) as response:
        return response.status, orjson.loads(await response.read())


async def test_rpc_protocol_refusals(knob_sim: Simulator) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await rpc(
            session, knob_sim, knob_sim.sts_endpoint, "GetCallerIdentity", {}, version="2020-03-31"
        )
        assert (status, body["Code"]) == (400, "InvalidVersion")
        status, body = await rpc(session, knob_sim, knob_sim.sts_endpoint, "ListAccounts", {})
        assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
        status, body = await rpc(session, knob_sim, knob_sim.sts_endpoint, "GetCallerIdentity", {}, path="/x")
        assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
        assert body["HostId"] == "sts.aliyuncs.com"
        status, body = await rpc(session, knob_sim, knob_sim.sts_endpoint, "AssumeRole", {})
        assert (status, body["Code"]) == (400, "MissingRoleArn")
        # GET works too, and so does a form-encoded body.
        status, body = await rpc(
            session, knob_sim, knob_sim.sts_endpoint, "GetCallerIdentity", {}, method="GET"
        )
        assert status == 200
        account = by_flag(knob_sim)["ok"][0]
        form = f"RoleArn={role_arn(account)}&RoleSessionName=form-session".encode()
        status, body = await rpc(
            session,
            knob_sim,
            knob_sim.sts_endpoint,
            "AssumeRole",
            {},
            body=form,
            content_type="application/x-www-form-urlencoded",
        )
        assert status == 200, body
        status, body = await rpc(
            session,
            knob_sim,
            knob_sim.resourcemanager_endpoint,
            "ListAccounts",
            {"PageSize": "0"},
            version="2020-03-31",
        )
        assert (status, body["Code"]) == (400, "InvalidParameter.PageSize")


async def test_rpc_signature_is_verified(knob_sim: Simulator) -> None:
    request = sts_models.AssumeRoleRequest(
        role_arn=role_arn(by_flag(knob_sim)["ok"][0]), role_session_name="s1"
    )
    wrong = Credentials(knob_sim.access_key_id, "not-the-secret")
    error = await sdk_error(sts(knob_sim, wrong).assume_role_async(request))
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 400)


# --- admin routes and ground truth ---------------------------------------------------------------


async def test_admin_routes_of_the_organisation(knob_sim: Simulator) -> None:
    account = by_flag(knob_sim)["ok"][0]
    creds = temporary(await assume(knob_sim, account))
    base = knob_sim.endpoints[knob_sim.regions[0]]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/_simulator/org") as response:
            info = await response.json()
        assert info["management_account_id"] == knob_sim.org.management_account_id  # type: ignore[union-attr]
        assert len(info["accounts"]) == 10
        row = next(a for a in info["accounts"] if a["id"] == account)
        assert row["assume_role_calls"] == 1
        assert info["rpc_requests"]["Sts"]["AssumeRole"] == 1
        async with session.get(f"{base}/_simulator/org/digests") as response:
            digests = (await response.json())["accounts"]
        assert len(digests) == 8  # members in a success status
        async with session.get(f"{base}/_simulator/fleet-digest", params={"account": account}) as response:
            one = await response.json()
        assert one["count"] == digests[account]["count"] == members(knob_sim)[0].instances
        raw = RawClient(session, knob_sim, creds.access_key_id, creds.access_key_secret, creds.security_token)
        keys = {
            (region, s["ServiceName"], i["InstanceName"])
            for region in knob_sim.regions
            for s in await raw.all_services(region)
            for i in await raw.all_instances(region, s["ServiceName"])
        }
        assert len(keys) == one["count"]
        async with session.patch(
            f"{base}/_simulator/org/accounts/{account}", json={"status": "PromoteFailed"}
        ) as r:
            assert (await r.json())["status"] == "PromoteFailed"
        async with session.patch(
            f"{base}/_simulator/org", json={"token_ttl": 60, "assume_role_rate": 50}
        ) as r:
            patched = await r.json()
        assert (patched["token_ttl"], patched["assume_role_rate"]) == (60, 50)
        async with session.post(f"{base}/_simulator/org/expire-tokens", json={"account": None}) as r:
            assert (await r.json())["expired"] == 1
        async with session.patch(f"{base}/_simulator/org", json={"nope": 1}) as r:
            assert r.status == 400
    error = await sdk_error(assume(knob_sim, account))  # PromoteFailed: not a member one can enter
    assert error.code == "EntityNotExist.Role"


async def test_a_single_account_simulator_has_no_organisation() -> None:
    async with Simulator(preset="small", seed=1) as sim:
        assert sim.org is None
        assert sim.sts_endpoint is None
        assert "sts_endpoint" not in sim.info()
        async with aiohttp.ClientSession() as session:
            base = sim.endpoints[sim.regions[0]]
            async with session.get(f"{base}/_simulator/org") as response:
                assert response.status == 400


# --- presets and the command line ---------------------------------------------------------------


async def test_org_large_starts_at_once_and_builds_fleets_lazily() -> None:
    started = time.perf_counter()
    async with Simulator(preset="org-large", seed=0) as sim:
        assert time.perf_counter() - started < 5
        org = sim.org
        assert org is not None
        assert len(org.members) == 1000
        assert sum(m.instances for m in org.members) == 500_000
        assert sim.info()["org_instances"] == 500_000
        assert list(org.built_tenants()) == []
        account = scannable(sim)[0]
        creds = temporary(await assume(sim, account.account_id))
        assert [t.member.account_id for t in org.built_tenants()] == [account.account_id]
        keys = set()
        async with aiohttp.ClientSession() as session:
            raw = RawClient(session, sim, creds.access_key_id, creds.access_key_secret, creds.security_token)
            for region in sim.regions:
                for s in await raw.all_services(region):
                    keys |= {
                        (region, s["ServiceName"], i["InstanceName"])
                        for i in await raw.all_instances(region, s["ServiceName"])
                    }
        assert len(keys) == account.instances


async def test_org_presets_shape() -> None:
    small = ORG_PRESETS["org-small"]
    assert (small.members, small.fleet.region_count, small.total_instances) == (12, 3, 3_000)
    large = ORG_PRESETS["org-large"]
    assert (large.members, large.total_instances) == (1_000, 500_000)


async def test_command_line_builds_an_organisation() -> None:
    args = build_parser().parse_args(
        ["--preset", "org-small", "--accounts", "20", "--token-ttl", "20", "--external-id", "abc",
         "--assume-role-rate", "5", "--missing-role", "2", "--eas-denied", "1", "--non-success", "3",
         "--regions", "2", "--services-per-region", "4", "--org-instances", "900", "--list-management",
         "--list-accounts-rate", "20"]
    )  # fmt: skip
    sim = simulator_from_args(args)
    org = sim.org
    assert org is not None
    spec = org.spec
    assert (spec.members, spec.token_ttl, spec.external_id, spec.assume_role_rate) == (20, 20, "abc", 5.0)
    assert (spec.missing_role, spec.eas_denied, spec.non_success, spec.total_instances) == (2, 1, 3, 900)
    assert sim.regions == ["cn-hangzhou", "cn-shanghai"]
    assert spec.fleet.services_per_region == 4
    assert (spec.list_management, spec.list_accounts_rate) == (True, 20.0)
    assert simulator_from_args(build_parser().parse_args(["--preset", "small"])).org is None
    assert simulator_from_args(build_parser().parse_args(["--accounts", "3"])).org is not None


@pytest.mark.parametrize("preset", ["org-small", "org-large"])
async def test_account_distribution_even_gives_every_member_the_same_size(preset: str) -> None:
    common = ["--preset", preset, "--accounts", "37", "--org-instances", "10007", "--non-success", "2"]
    even = simulator_from_args(build_parser().parse_args([*common, "--account-distribution", "even"])).org
    tail = simulator_from_args(build_parser().parse_args(common)).org
    assert even is not None
    assert tail is not None
    assert isinstance(even.spec.account_sizes, Even)
    sizes = [m.instances for m in even.members if m.status in SUCCESS_STATUSES]
    assert len(sizes) == 35
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == 10_007 == sum(m.instances for m in tail.members)
    # Each member's fleet holds its size, and the default stays the preset's long tail.
    member = even.members[0]
    assert even.tenant(member.account_id).fleet.instance_count == member.instances
    assert tail.spec.account_sizes == ORG_PRESETS[preset].account_sizes
    tail_sizes = [m.instances for m in tail.members if m.status in SUCCESS_STATUSES]
    assert max(tail_sizes) > 2 * min(tail_sizes)
    longtail = simulator_from_args(build_parser().parse_args([*common, "--account-distribution", "longtail"]))
    assert longtail.org is not None
    assert longtail.org.spec.account_sizes == ORG_PRESETS[preset].account_sizes


async def test_account_distribution_alone_makes_an_organisation() -> None:
    org = simulator_from_args(build_parser().parse_args(["--account-distribution", "even"])).org
    assert org is not None
    assert org.spec.total_instances == ORG_PRESETS["org-small"].total_instances
    sizes = [m.instances for m in org.members if m.status in SUCCESS_STATUSES]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == org.spec.total_instances


async def test_the_list_accounts_quota() -> None:
    clock = FakeClock()
    async with Simulator(org=KNOBS.with_changes(list_accounts_rate=1.0), seed=9, clock=clock) as sim:
        client = rm(sim)
        for _ in range(5):  # the burst
            await client.list_accounts_async(rm_models.ListAccountsRequest())
        error = await sdk_error(client.list_accounts_async(rm_models.ListAccountsRequest()))
        assert (error.code, error.status_code) == ("Throttling.User", 400)
        clock.advance(1.0)
        await client.list_accounts_async(rm_models.ListAccountsRequest())
        assert sim.org_info()["list_accounts_throttled"] == 1
        sim.set_org(list_accounts_rate=None)
        for _ in range(10):
            await client.list_accounts_async(rm_models.ListAccountsRequest())


async def test_member_digests_are_computed_once(knob_sim: Simulator) -> None:
    account = by_flag(knob_sim)["ok"][0]
    first = knob_sim.fleet_digest(account=account)
    assert knob_sim.fleet_digest(account=account) is first
    content = knob_sim.fleet_digest(account=account, content=True)
    assert content.count == first.count
    assert content.digest != first.digest
    assert knob_sim.org_digests()[account] is first


async def test_the_management_fleet_may_be_custom_but_shares_the_regions() -> None:
    custom = FleetSpec(regions=3, services_per_region=4, total_instances=50)
    async with Simulator(org=KNOBS, spec=custom, seed=9) as sim:
        management = Credentials(sim.access_key_id, sim.access_key_secret)
        body = (
            await eas(sim, sim.regions[0], management).list_services_async(eas_models.ListServicesRequest())
        ).body
        assert body.total_count == 4
        assert sim.fleet_digest().count == 50
        assert sim.org is not None
        assert sim.fleet_digest(account=sim.org.management_account_id).count == 50
    with pytest.raises(ConfigError, match="members' regions"):
        Simulator(org=KNOBS, spec=FleetSpec(regions=2))


async def test_the_management_account_listed_but_not_assumable() -> None:
    async with Simulator(org=KNOBS.with_changes(list_management=True), seed=9) as sim:
        org = sim.org
        assert org is not None
        body = (await rm(sim).list_accounts_async(rm_models.ListAccountsRequest(page_size=100))).body
        ids = [a.account_id for a in body.accounts.account]
        assert ids == [org.management_account_id] + [m.account_id for m in members(sim)]
        assert body.total_count == 11
        assert body.accounts.account[0].status == "CreateSuccess"
        error = await sdk_error(assume(sim, org.management_account_id))
        assert (error.code, error.status_code) == ("EntityNotExist.Role", 404)


@pytest.mark.parametrize("policy", ["not json", "[]", "x" * 2049])
async def test_a_session_policy_must_be_grammatical(knob_sim: Simulator, policy: str) -> None:
    error = await sdk_error(assume(knob_sim, by_flag(knob_sim)["ok"][0], policy=policy))
    assert (error.code, error.status_code) == ("InvalidParameter.PolicyGrammar", 400)


async def test_a_session_policy_and_source_identity(knob_sim: Simulator) -> None:
    policy = '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "eas:List*", "Resource": "*"}]}'
    body = await assume(knob_sim, by_flag(knob_sim)["ok"][0], policy=policy, source_identity="alice")
    assert body.source_identity == "alice"


async def test_assume_role_server_errors_on_demand_and_at_a_rate(knob_sim: Simulator) -> None:
    account = by_flag(knob_sim)["ok"][0]
    knob_sim.set_org(fail_next_assume_roles=2)
    for _ in range(2):
        error = await sdk_error(assume(knob_sim, account))
        assert (error.code, error.status_code) == ("ServiceUnavailable", 503)
    await assume(knob_sim, account)
    knob_sim.set_org(assume_role_error_rate=1.0)
    error = await sdk_error(assume(knob_sim, account))
    assert error.code == "ServiceUnavailable"
    knob_sim.set_org(assume_role_error_rate=0.0)
    await assume(knob_sim, account)
    assert knob_sim.org_info()["assume_role_faults"] == 3


async def test_rpc_latency_on_the_simulator_clock() -> None:
    clock = FakeClock()
    async with Simulator(org=KNOBS.with_changes(rpc_latency_ms=250.0), seed=9, clock=clock) as sim:
        await sts(sim).get_caller_identity_async()
        await rm(sim).list_accounts_async(rm_models.ListAccountsRequest())
        assert clock.sleeps == [0.25, 0.25]


async def test_a_longer_maximum_session_duration() -> None:
    async with Simulator(org=KNOBS.with_changes(max_session_duration=43_200), seed=9) as sim:
        account = by_flag(sim)["ok"][0]
        await assume(sim, account, duration_seconds=43_200)
        error = await sdk_error(assume(sim, account, duration_seconds=43_201))
        assert error.code == "InvalidParameter.DurationSeconds"
        assert "15min/12hr" in error.message
    with pytest.raises(ConfigError, match=r"3600\.\.43200"):
        KNOBS.with_changes(max_session_duration=900)
