"""How ``eas-scan scan --engine ray`` plans an organisation scan, without Ray: the driver's roster
(accounts, skipped members, accounts whose role cannot be assumed) is the local engine's, and the
workers get what they need to assume each account's role as the local scan would."""

from __future__ import annotations

import threading
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from scanner import Concurrency, Organization, ScanFailedError, Scanner, StaticCredentials
from scanner.cli import ray_scan
from scanner.cli.args import build_parser
from scanner.cli.config import ScanConfig, config_from
from scanner.distributed import OrgRoster, UnitReport, WorkerScanConfig, summarize
from scanner.org import role_arn
from scanner.simulator import FleetSpec, OrgSpec, Simulator


def ray_config(*flags: str, out: Path) -> ScanConfig:
    args = build_parser().parse_args(["scan", *flags, "--output-dir", str(out), "--engine", "ray"])
    return config_from(args)


@pytest.mark.asyncio
async def test_the_driver_plans_an_organisation_as_the_local_engine_finds_it(tmp_path: Path) -> None:
    org = OrgSpec(
        members=5,
        fleet=FleetSpec(regions=2, services_per_region=2),
        total_instances=120,
        non_success=1,
        missing_role=1,
    )
    async with Simulator(org=org, seed=7) as sim:
        endpoints = [f"--endpoint={region}={url}" for region, url in sim.endpoints.items()]
        config = ray_config(
            "--org",
            "--sts-endpoint",
            str(sim.sts_endpoint),
            "--resourcemanager-endpoint",
            str(sim.resourcemanager_endpoint),
            *endpoints,
            out=tmp_path / "scan",
        )
        key = StaticCredentials(sim.access_key_id, sim.access_key_secret)
        roster, _, fatal = await ray_scan._org_roster(
            config, key, dict(sim.endpoints), dict(config.account_options)
        )
        async with Scanner(
            credentials=key,
            endpoints=dict(sim.endpoints),
            accounts=Organization(),
            sts_endpoint=sim.sts_endpoint,
            resourcemanager_endpoint=sim.resourcemanager_endpoint,
        ) as scanner:
            stream = scanner.scan()
            async for _ in stream.batches():
                pass
            local = stream.summary.to_dict()
    assert fatal is None
    assert roster is not None
    assert list(roster.accounts) == list(local["accounts"])
    assert [{"id": a, "status": s} for a, s in roster.skipped] == local["skipped_accounts"]
    refused = {a for a, block in local["accounts"].items() if not block["complete"]}
    assert len(refused) == 1  # the member without the role
    assert set(roster.failed) == refused
    assert [dict(f) for f in roster.failures] == [f for f in local["failures"] if f["region"] is None]
    assert {unit.account for unit in roster.units()} == set(local["accounts"]) - refused
    assert {unit.region for unit in roster.units()} == set(sim.regions)

    # Every unit complete on the workers: the summary's blocks are the local scan's.
    reports = [
        UnitReport(
            unit=unit,
            status="complete",
            records=local["accounts"][unit.account]["regions"][unit.region]["instances"],
            summary={"regions": {unit.region: local["accounts"][unit.account]["regions"][unit.region]}},
        )
        for unit in roster.units()
    ]
    document = summarize(
        reports, planned=roster.units(), duration_s=1.0, cancelled=False, roster=roster
    ).to_dict()
    assert document["complete"] is False  # as the local scan: one account refused
    assert document["accounts"] == local["accounts"]
    assert document["skipped_accounts"] == local["skipped_accounts"]
    assert document["failures"] == local["failures"]
    assert document["regions"] == local["regions"]
    assert document["records"] == local["records"]


def test_workers_assume_each_account_s_role_as_the_accounts_file_says(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        '[defaults]\nrole_name = "EasInventoryReader"\n'
        '[[account]]\nid = "1111111111111111"\nexternal_id = "ext-1"\n'
        '[[account]]\nid = "2222222222222222"\nrole_arn = "acs:ram::2222222222222222:role/Other"\n'
    )
    config = ray_config(
        "--accounts",
        str(accounts),
        "--role-session-name",
        "inventory-ray",
        "--role-duration",
        "1800",
        "--sts-endpoint",
        "https://sts-vpc.cn-hangzhou.aliyuncs.com",
        "--concurrency-per-account",
        "4",
        out=tmp_path / "scan",
    )
    roster = OrgRoster(accounts={"1111111111111111": (None, ("r",)), "2222222222222222": (None, ("r",))})
    source = ray_scan._assumed_roles(config, roster, None, config.account_options)
    assert source.role_arns == {
        "1111111111111111": role_arn("1111111111111111", "EasInventoryReader"),
        "2222222222222222": "acs:ram::2222222222222222:role/Other",
    }
    assert source.external_ids == {"1111111111111111": "ext-1"}
    assert (source.role_session_name, source.role_duration) == ("inventory-ray", 1800)
    assert source.sts_endpoint == "https://sts-vpc.cn-hangzhou.aliyuncs.com"
    assert "ext-1" not in repr(source)  # an ExternalId is never shown
    workers = ray_scan.worker_config(config, accounts=source, per_account=4)
    assert workers.account_credentials is source
    assert workers.concurrency_per_account == 4
    concurrency: Any = workers.scan_concurrency()
    assert isinstance(concurrency, Concurrency)
    assert concurrency.total == concurrency.per_region == 4


# --- Ray starts while the driver plans --------------------------------------------------------------


def _fake_plan() -> ray_scan._Plan:
    return ray_scan._Plan(workers=WorkerScanConfig(), units=[])


@pytest.mark.asyncio
async def test_ray_starts_while_the_driver_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray_up = threading.Event()
    planned = threading.Event()

    def init(address: str | None) -> bool:  # in its thread: Ray is up, then waits for the plan
        ray_up.set()
        return planned.wait(timeout=10)

    async def plan(config: ScanConfig, stack: AsyncExitStack) -> ray_scan._Plan:
        # Done one after the other, neither would ever end.
        assert await anyio.to_thread.run_sync(ray_up.wait, 10)
        planned.set()
        return _fake_plan()

    monkeypatch.setattr(ray_scan, "_plan", plan)
    start = ray_scan._RayStart(None)
    monkeypatch.setattr(start, "_init", init)
    async with AsyncExitStack() as stack:
        got = await ray_scan._plan_while_ray_starts(ray_config("--simulate", out=tmp_path), stack, start)
    assert got.units == []
    assert start.owned  # from the thread: ray.shutdown is the CLI's


@pytest.mark.asyncio
async def test_a_failed_plan_is_raised_as_is_once_ray_has_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def plan(config: ScanConfig, stack: AsyncExitStack) -> ray_scan._Plan:
        raise ScanFailedError("no region to scan")

    monkeypatch.setattr(ray_scan, "_plan", plan)
    start = ray_scan._RayStart(None)
    monkeypatch.setattr(start, "_init", lambda address: True)
    with pytest.raises(ScanFailedError, match="no region to scan"):  # not an ExceptionGroup
        async with AsyncExitStack() as stack:
            await ray_scan._plan_while_ray_starts(ray_config("--simulate", out=tmp_path), stack, start)
    assert start.owned  # started meanwhile: the CLI stops it


@pytest.mark.asyncio
async def test_ray_failing_to_start_is_raised_after_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def plan(config: ScanConfig, stack: AsyncExitStack) -> ray_scan._Plan:
        return _fake_plan()

    def init(address: str | None) -> bool:
        raise ConnectionError("no Ray cluster at auto")

    monkeypatch.setattr(ray_scan, "_plan", plan)
    start = ray_scan._RayStart("auto")
    monkeypatch.setattr(start, "_init", init)
    with pytest.raises(ConnectionError, match="no Ray cluster"):
        async with AsyncExitStack() as stack:
            await ray_scan._plan_while_ray_starts(ray_config("--simulate", out=tmp_path), stack, start)
    assert not start.owned
