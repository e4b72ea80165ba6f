"""Multi-account scans (issue 13) end to end over loopback against the organisation simulator.

``Scanner(accounts=...)``: an exact org-small scan (per-account digests equal the simulator's
ground truth), members skipped for their status, accounts whose role is missing or denied EAS
(incomplete, named with their code; the scan goes on), short-lived tokens refreshed mid-scan,
an expired token refused and retried once, include/exclude, folders, accounts lists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from scanner import ConfigError, ScanFailedError, Scanner, StaticCredentials
from scanner.engine.stats import ScanStatistics
from scanner.org.sources import Account, Organization
from scanner.output.progress import describe
from scanner.simulator import OrgSpec, Simulator, account_key_digests
from scanner.simulator.org import ORG_PRESETS
from scanner.testing import FakeClock
from tests.org.members import members_by_flag

pytestmark = pytest.mark.asyncio

KNOBS = OrgSpec(members=8, total_instances=400, non_success=2, missing_role=1, eas_denied=1)


def scanner_for(sim: Simulator, accounts: Any, **kwargs: Any) -> Scanner:
    return Scanner(
        credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret),
        endpoints=sim.endpoints,
        allow_insecure_http=True,
        sts_endpoint=sim.sts_endpoint,
        resourcemanager_endpoint=sim.resourcemanager_endpoint,
        accounts=accounts,
        **kwargs,
    )


async def scan_all(scanner: Scanner) -> tuple[list[dict[str, Any]], Any]:
    stream = scanner.scan()
    records = [record async for record in stream]
    return records, stream.summary


def scanned_digests(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [(r["AccountId"], r["ClusterId"], r["ServiceName"], r["InstanceName"]) for r in records]
    return {a: d.to_dict() for a, d in account_key_digests(keys).items()}


@pytest_asyncio.fixture
async def org_small() -> AsyncIterator[Simulator]:
    async with Simulator(preset="org-small", seed=5) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def knob_sim() -> AsyncIterator[Simulator]:
    async with Simulator(org=KNOBS, seed=9) as simulator:
        yield simulator


async def test_org_small_scan_is_exact_per_account(org_small: Simulator) -> None:
    async with scanner_for(org_small, Organization()) as scanner:
        records, summary = await scan_all(scanner)
        roles = scanner.role_statistics()
    truth = {a: d.to_dict() for a, d in org_small.org_digests().items()}
    got = scanned_digests(records)
    assert dict(got.items()) == {a: d for a, d in truth.items() if d["count"]}
    assert all(isinstance(r["AccountId"], str) for r in records)
    assert summary.complete
    assert summary.records == len(records) == sum(d["count"] for d in truth.values())
    accounts = summary.accounts
    assert accounts is not None
    assert set(accounts) == set(truth)
    for account_id, entry in accounts.items():
        assert entry.complete
        assert entry.error is None
        assert entry.instances == truth[account_id]["count"]
    skipped = list(members_by_flag(org_small)["skipped"])
    assert [s[0] for s in summary.skipped_accounts] == skipped
    document = summary.to_dict()
    assert document["skipped_accounts"] == [{"id": i, "status": s} for i, s in summary.skipped_accounts]
    assert set(document["accounts"]) == set(truth)
    assert {"name", "complete", "error", "services", "instances", "regions"} <= set(
        next(iter(document["accounts"].values()))
    )
    # One AssumeRole per account, none refreshed (1 h tokens).
    assert roles["assume_role_calls"] == len(truth)
    assert roles["token_refreshes"] == 0


async def test_missing_role_and_denied_eas_are_incomplete_with_their_code(knob_sim: Simulator) -> None:
    flags = members_by_flag(knob_sim)
    async with scanner_for(knob_sim, Organization()) as scanner:
        records, summary = await scan_all(scanner)
    assert not summary.complete
    accounts = summary.accounts
    assert accounts is not None
    for account_id in flags["ok"]:
        assert accounts[account_id].complete, accounts[account_id]
    (missing,) = flags["missing_role"]
    assert not accounts[missing].complete
    assert accounts[missing].error is not None
    assert accounts[missing].error.startswith("EntityNotExist.Role")
    (denied,) = flags["denied"]
    assert not accounts[denied].complete
    assert accounts[denied].error is not None
    assert "Forbidden.RAM" in accounts[denied].error
    assert {s[0] for s in summary.skipped_accounts} == set(flags["skipped"])
    failures = summary.to_dict()["failures"]
    assert failures
    assert all("account" in f for f in failures)
    assert {f["account"] for f in failures} == {missing, denied}
    assert any(f["code"] == "EntityNotExist.Role" and f["region"] is None for f in failures)
    # The others' records are all there.
    truth = {a: d.to_dict() for a, d in knob_sim.org_digests().items()}
    got = scanned_digests(records)
    assert got == {a: truth[a] for a in flags["ok"] if truth[a]["count"]}
    text = repr(summary.to_dict()) + repr(records[:50])
    assert knob_sim.access_key_secret not in text


async def test_no_account_scannable_is_fatal(knob_sim: Simulator) -> None:
    flags = members_by_flag(knob_sim)
    only = flags["missing_role"] + flags["denied"]
    async with scanner_for(knob_sim, Organization(include=only)) as scanner:
        stream = scanner.scan()
        with pytest.raises(ScanFailedError, match="no account could be scanned"):
            _ = [r async for r in stream]
        assert not stream.summary.complete


async def test_include_and_exclude(org_small: Simulator) -> None:
    ok = members_by_flag(org_small)["ok"]
    include, exclude = ok[:4], ok[1:2]
    async with scanner_for(org_small, Organization(include=include, exclude=exclude)) as scanner:
        records, summary = await scan_all(scanner)
    assert summary.complete
    assert summary.accounts is not None
    assert list(summary.accounts) == [ok[0], ok[2], ok[3]]
    assert {r["AccountId"] for r in records} <= {ok[0], ok[2], ok[3]}


async def test_a_list_of_accounts_with_their_own_regions(org_small: Simulator) -> None:
    ok = members_by_flag(org_small)["ok"]
    region = next(iter(org_small.endpoints))
    accounts = [Account(id=ok[0], name="prod", regions=[region]), Account(id=ok[1])]
    async with scanner_for(org_small, accounts) as scanner:
        records, summary = await scan_all(scanner)
    assert summary.complete
    assert summary.accounts is not None
    assert summary.accounts[ok[0]].name == "prod"
    assert list(summary.accounts[ok[0]].regions) == [region]
    assert {r["ClusterId"] for r in records if r["AccountId"] == ok[0]} <= {region}


async def test_short_tokens_are_refreshed_mid_scan(org_small: Simulator) -> None:
    org_small.set_org(token_ttl=900)
    spec = ORG_PRESETS["org-small"]
    async with scanner_for(org_small, Organization(), role_duration=900, accounts_in_flight=2) as scanner:
        stream = scanner.scan()
        records = []
        async for record in stream:
            records.append(record)
            if len(records) == 500:
                org_small.expire_tokens()  # every token issued so far is now refused as expired
        summary = stream.summary
        roles = scanner.role_statistics()
    assert summary.complete, summary.failures
    truth = {a: d.to_dict() for a, d in org_small.org_digests().items() if d.count}
    assert scanned_digests(records) == truth
    scanned = spec.members - spec.non_success
    assert roles["assume_role_calls"] <= scanned + roles["token_refreshes"]
    assert roles["token_refreshes"] >= 1
    assert roles["token_retries"] >= 1
    assert summary.retries == 0  # the expired-token retries count against no account


async def test_the_organisation_cannot_be_listed(org_small: Simulator) -> None:
    scanner = Scanner(
        credentials=StaticCredentials("LTAI5tNobodyKnowsThis", "wrong-secret-wrong-secret"),
        endpoints=org_small.endpoints,
        allow_insecure_http=True,
        sts_endpoint=org_small.sts_endpoint,
        resourcemanager_endpoint=org_small.resourcemanager_endpoint,
        accounts=Organization(),
    )
    async with scanner:
        stream = scanner.scan()
        with pytest.raises(ScanFailedError, match="could not list the accounts") as info:
            _ = [r async for r in stream]
    assert "wrong-secret" not in str(info.value)


async def test_tokens_that_live_less_than_asked_are_refreshed_before_they_expire() -> None:
    # One fake wall clock for the simulator's signature checks and token lifetimes and for the
    # scanner: each record read moves it on, so a scan lasts many token lifetimes.
    clock = FakeClock(wall_start=datetime.now(UTC))
    spec = ORG_PRESETS["org-small"]
    async with Simulator(preset="org-small", seed=5, auth_clock=clock) as sim:
        sim.set_org(token_ttl=900)
        async with scanner_for(sim, Organization(), clock=clock, accounts_in_flight=12) as scanner:
            stream = scanner.scan()
            records = []
            async for record in stream:
                records.append(record)
                clock.advance(0.5)  # ~3,000 records: ~1,500 s; the tokens live 900 s
            summary = stream.summary
            roles = scanner.role_statistics()
        truth = {a: d.to_dict() for a, d in sim.org_digests().items() if d.count}
        per_account = {m.account_id: m.assume_role_calls for m in sim.org.members} if sim.org else {}
    assert summary.complete, summary.failures
    assert scanned_digests(records) == truth
    assert roles["token_refreshes"] >= 2
    scanned = spec.members - spec.non_success
    assert roles["assume_role_calls"] <= scanned + roles["token_refreshes"]
    assert sum(per_account.values()) == roles["assume_role_calls"]


async def test_closing_the_stream_stops_every_account(org_small: Simulator) -> None:
    async with scanner_for(org_small, Organization(), accounts_in_flight=4) as scanner:
        stream = scanner.scan()
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 300:
                break
        await stream.aclose()
        summary = stream.summary
    assert summary.cancelled
    assert not summary.complete
    assert summary.accounts is not None
    assert not all(entry.complete for entry in summary.accounts.values())
    progress = stream.statistics()
    assert progress.accounts_total == len(summary.accounts)


async def test_an_accounts_file_path_and_its_errors(org_small: Simulator, tmp_path: Path) -> None:
    ok = members_by_flag(org_small)["ok"]
    path = tmp_path / "accounts.toml"
    path.write_text(f'[[account]]\nid = "{ok[0]}"\nname = "one"\n')
    async with scanner_for(org_small, str(path)) as scanner:
        records, summary = await scan_all(scanner)
    assert summary.complete
    assert summary.accounts is not None
    assert list(summary.accounts) == [ok[0]]
    assert {r["AccountId"] for r in records} == {ok[0]}
    path.write_text(f'[[account]]\nid = "{ok[0]}"\nrole_arn = "acs:ram::1:role/x"\n')
    with pytest.raises(ConfigError, match=r"accounts.toml, line 3: role_arn is a role of account 1"):
        scanner_for(org_small, path)


async def test_progress_lines_count_accounts() -> None:
    stats = ScanStatistics(
        elapsed_s=1.0, requests=10, retries=0, throttled=0, bytes_received=0, records=5, failures=0,
        regions={}, accounts_total=12, accounts_done=3,
    )  # fmt: skip
    assert describe(stats).startswith("accounts 3/12, regions")
    assert not describe(dataclasses.replace(stats, accounts_total=0)).startswith("accounts")


async def test_an_account_opens_no_more_listings_than_its_request_slots() -> None:
    from scanner.engine.accounts import per_account_concurrency
    from scanner.engine.config import Concurrency

    capped = per_account_concurrency(Concurrency(), 16)
    assert (capped.total, capped.per_region, capped.pages_per_listing) == (16, 16, 8)
    assert (capped.services_per_region, capped.long_listings_per_region, capped.long_listings) == (16, 8, 16)
    wide = per_account_concurrency(Concurrency(total=4, services_per_region=2), 64)
    assert (wide.total, wide.services_per_region, wide.long_listings) == (4, 2, 32)  # never raised


async def test_the_accounts_of_a_scan_learn_their_rates_together() -> None:
    # Each account's registry joins the scan's one PeerRates: once three scopes of an API have
    # learned its limit, a later account's scope of it starts on the curve, not in slow start.
    import random

    import anyio

    from scanner.eas.params import InstanceQuery, ServiceQuery
    from scanner.engine.accounts import AccountScan
    from scanner.engine.config import Concurrency, Consistency, RateLimit, RetryPolicy
    from scanner.engine.pacing import ClientRateLimiters
    from scanner.engine.rate_control import Phase
    from scanner.engine.scheduler import ScanItem, ScanPlan

    clock = FakeClock()
    registries: list[ClientRateLimiters] = []

    def limiters() -> ClientRateLimiters:
        registries.append(ClientRateLimiters(RateLimit(), clock))
        return registries[-1]

    send, receive = anyio.create_memory_object_stream[ScanItem](1)
    plan = ScanPlan(("r",), None, ServiceQuery(), InstanceQuery(), "r")
    scan = AccountScan(
        None,  # type: ignore[arg-type]  # no account is opened here
        plan,
        send,
        concurrency=Concurrency(),
        per_account=16,
        consistency=Consistency(),
        retry_policy=RetryPolicy(),
        limiters=limiters,
        clock=clock,
        rng=random.Random(0),
    )
    with send, receive:
        scan._account_limiters()
        scan._account_limiters()
    first, second = registries
    assert first.peers is not None
    assert first.peers is second.peers
    for rate in (0.9, 1.0, 1.1):
        first.peers.learned(("r", "ListServiceInstances"), rate, 5)
    assert second.get("r", "ListServiceInstances").phase is Phase.CUBIC
    assert second.get("r", "ListServiceInstances").rate == 1.0
    assert second.get("r", "ListServices").phase is Phase.SLOW_START  # nothing learned of it
