"""A worker's body and the default runner, in-process (no Ray): units into a scan directory."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import orjson
import pytest
import pytest_asyncio

from scanner import Consistency, Organization, Scanner, ScannerError, StaticCredentials
from scanner.distributed import (
    AssumedRoleSource,
    DirectoryRunnerFactory,
    UnitReport,
    UnitRunner,
    WorkerScanConfig,
    WorkerSlot,
    WorkUnit,
    sizes_from,
)
from scanner.distributed.worker import UnitWorker
from scanner.gctuning import BATCH_GC_THRESHOLD
from scanner.records import encode_jsonl
from scanner.scandir import ScanDirectory, ScanParams
from scanner.simulator import FaultConfig, FleetSpec, LongTail, OrgSpec, Simulator, record_key_digest
from tests.distributed.conftest import account_digests, directory_digest

SPEC = FleetSpec(regions=2, services_per_region=6, total_instances=300, distribution=LongTail(1.0, 100))
SLOT = WorkerSlot(index=0, workers=1, assume_role_rate=20.0)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(spec=SPEC, seed=2) as simulator:
        yield simulator


def config(sim: Simulator, secret: str | None = None) -> WorkerScanConfig:
    key = StaticCredentials(sim.access_key_id, secret or sim.access_key_secret)
    return WorkerScanConfig(
        credentials=lambda: key,
        endpoints=dict(sim.endpoints),
        allow_insecure_http=True,
        consistency=Consistency(page_size=10),  # several pages a service: a unit takes a few round trips
    )


def worker(sim: Simulator, out: Path, secret: str | None = None) -> UnitWorker:
    params = ScanParams(regions=tuple(sim.regions))
    return UnitWorker(DirectoryRunnerFactory(config(sim, secret), str(out), params, "run1"), SLOT)


def part_lines(root: Path) -> list[bytes]:
    return [line for part in sorted(root.rglob("part-*.jsonl")) for line in part.read_bytes().splitlines()]


def data_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "_manifest" not in p.parts]


@pytest.mark.asyncio
async def test_units_are_scanned_into_their_parts(sim: Simulator, tmp_path: Path) -> None:
    unit_worker = worker(sim, tmp_path)
    info = await unit_worker.start()
    assert info.index == 0
    reports = [await unit_worker.run(WorkUnit(None, region), 1) for region in sim.regions]
    await unit_worker.close()
    assert all(report.complete for report in reports)
    assert all(report.worker == info for report in reports)
    assert directory_digest(tmp_path) == sim.fleet_digest()
    assert sum(report.records for report in reports) == sim.fleet_digest().count
    entries = ScanDirectory.open(tmp_path).entries()
    assert {entry.run_id for entry in entries.values()} == {"run1"}


@pytest.mark.asyncio
async def test_the_worker_raises_the_gc_threshold_while_open(sim: Simulator, tmp_path: Path) -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        unit_worker = worker(sim, tmp_path)
        assert gc.get_threshold() == (700, 10, 10)
        await unit_worker.start()
        assert gc.get_threshold() == (BATCH_GC_THRESHOLD, 10, 10)
        report = await unit_worker.run(WorkUnit(None, sim.regions[0]), 1)
        assert report.complete
        assert gc.get_threshold() == (BATCH_GC_THRESHOLD, 10, 10)
        await unit_worker.close()
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


@pytest.mark.asyncio
async def test_a_cancelled_unit_leaves_no_trace_and_runs_again(sim: Simulator, tmp_path: Path) -> None:
    sim.set_faults(FaultConfig(latency_ms=200))
    region = sim.regions[0]
    unit_worker = worker(sim, tmp_path)
    await unit_worker.start()
    with anyio.move_on_after(0.55):  # ListServices answered, instance pages in flight
        await unit_worker.run(WorkUnit(None, region), 1)
        pytest.fail("the unit should still be running")
    directory = ScanDirectory.open(tmp_path)
    assert directory.entries() == {}
    assert data_files(tmp_path) == []
    sim.set_faults(FaultConfig())
    report = await unit_worker.run(WorkUnit(None, region), 2)
    await unit_worker.close()
    assert report.complete
    expected = record_key_digest(key for key in sim.current_keys() if key[0] == region)
    assert directory_digest(tmp_path) == expected


@pytest.mark.asyncio
async def test_a_unit_whose_scan_fails_is_committed_incomplete(sim: Simulator, tmp_path: Path) -> None:
    unit_worker = worker(sim, tmp_path, secret="not-the-secret")
    await unit_worker.start()
    report = await unit_worker.run(WorkUnit(None, sim.regions[0]), 1)
    await unit_worker.close()
    assert report.status == "incomplete"
    assert report.failures
    entry = ScanDirectory.open(tmp_path).entries()
    assert [e.status for e in entry.values()] == ["incomplete"]


@pytest.mark.asyncio
async def test_sizes_come_from_an_earlier_scan(sim: Simulator, tmp_path: Path) -> None:
    unit_worker = worker(sim, tmp_path)
    await unit_worker.start()
    first = await unit_worker.run(WorkUnit(None, sim.regions[0]), 1)
    await unit_worker.close()
    work = [WorkUnit(None, region) for region in sim.regions]
    sized = sizes_from(work, ScanDirectory.open(tmp_path))
    assert sized == [WorkUnit(None, sim.regions[0], first.records), WorkUnit(None, sim.regions[1])]


@pytest.mark.asyncio
async def test_a_worker_moving_between_accounts_keeps_few_scanners_open(tmp_path: Path) -> None:
    org = OrgSpec(members=3, fleet=FleetSpec(regions=2, services_per_region=3), total_instances=200)
    async with Simulator(org=org, seed=4) as sim:
        assert sim.org is not None
        accounts = [member.account_id for member in sim.org.scannable()]
        key = StaticCredentials(sim.access_key_id, sim.access_key_secret)
        source = AssumedRoleSource(
            source=lambda: key, sts_endpoint=sim.sts_endpoint, allow_insecure_http=True
        )
        scan_config = WorkerScanConfig(
            account_credentials=source, endpoints=dict(sim.endpoints), allow_insecure_http=True
        )
        params = ScanParams(regions=tuple(sim.regions), accounts=tuple(accounts))
        factory = DirectoryRunnerFactory(scan_config, str(tmp_path), params, "run1", max_open_accounts=1)
        unit_worker = UnitWorker(factory, SLOT)
        await unit_worker.start()
        # Back and forth between accounts: each switch closes the other account's Scanner.
        order = [WorkUnit(account, region) for region in sim.regions for account in accounts]
        reports = [await unit_worker.run(unit, 1) for unit in order]
        await unit_worker.close()
        assert all(report.complete for report in reports)
        assert account_digests(tmp_path) == {a: d for a, d in sim.org_digests().items() if d.count}
        # The credentials outlive the Scanners: one AssumeRole per account.
        assert sim.org_info()["rpc_requests"]["Sts"]["AssumeRole"] == len(accounts)


@pytest.mark.asyncio
async def test_a_unit_cancelled_through_the_worker_leaves_no_trace(sim: Simulator, tmp_path: Path) -> None:
    sim.set_faults(FaultConfig(latency_ms=200))
    unit_worker = worker(sim, tmp_path)
    await unit_worker.start()
    unit = WorkUnit(None, sim.regions[0])
    raised: list[BaseException] = []

    async def scan() -> None:
        try:
            await unit_worker.run(unit, 1)
        except ScannerError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(scan)
        await anyio.sleep(0.55)  # ListServices answered, instance pages in flight
        await unit_worker.cancel(unit, 2)  # another attempt: not this one
        await unit_worker.cancel(unit, 1)
    await unit_worker.close()
    assert [str(exc) for exc in raised] == [f"unit {unit}, attempt 1: cancelled before its commit"]
    assert ScanDirectory.open(tmp_path).entries() == {}
    assert data_files(tmp_path) == []
    assert await unit_worker.progress() == ()


class CommittingFactory:
    """A runner whose units end in a shielded 'commit' (as a part's commit thread is)."""

    def __init__(self) -> None:
        self.committing = anyio.Event()

    @contextlib.asynccontextmanager
    async def open(self, slot: WorkerSlot) -> AsyncIterator[UnitRunner]:
        async def run(unit: WorkUnit) -> UnitReport:
            with anyio.CancelScope(shield=True):
                self.committing.set()
                await anyio.sleep(0.1)
            return UnitReport(unit=unit, status="complete", records=3)

        yield run


@pytest.mark.asyncio
async def test_a_unit_cancelled_while_it_commits_stays_committed() -> None:
    factory = CommittingFactory()
    unit_worker = UnitWorker(factory, SLOT)
    await unit_worker.start()
    unit = WorkUnit(None, "r1")
    reports: list[UnitReport] = []

    async def scan() -> None:
        reports.append(await unit_worker.run(unit, 1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(scan)
        await factory.committing.wait()
        await unit_worker.cancel(unit, 1)
    await unit_worker.close()
    assert [(r.unit, r.status, r.records, r.attempt) for r in reports] == [(unit, "complete", 3, 1)]


@pytest.mark.asyncio
async def test_units_of_several_accounts_at_once_share_a_worker(tmp_path: Path) -> None:
    org = OrgSpec(members=3, fleet=FleetSpec(regions=2, services_per_region=3), total_instances=300)
    async with Simulator(org=org, seed=4) as sim:
        assert sim.org is not None
        sim.set_faults(FaultConfig(latency_ms=20))
        accounts = [member.account_id for member in sim.org.scannable()]
        key = StaticCredentials(sim.access_key_id, sim.access_key_secret)
        source = AssumedRoleSource(
            source=lambda: key, sts_endpoint=sim.sts_endpoint, allow_insecure_http=True
        )
        scan_config = WorkerScanConfig(
            account_credentials=source,
            endpoints=dict(sim.endpoints),
            allow_insecure_http=True,
            consistency=Consistency(page_size=10),
        )
        params = ScanParams(regions=tuple(sim.regions), accounts=tuple(accounts))
        # One Scanner kept open when idle: the units in flight still keep theirs open.
        factory = DirectoryRunnerFactory(scan_config, str(tmp_path), params, "run1", max_open_accounts=1)
        unit_worker = UnitWorker(factory, SLOT)
        await unit_worker.start()
        reports: list[UnitReport] = []

        async def scan(unit: WorkUnit) -> None:
            reports.append(await unit_worker.run(unit, 1))

        async with anyio.create_task_group() as tg:
            for unit in [WorkUnit(account, region) for account in accounts for region in sim.regions]:
                tg.start_soon(scan, unit)
        await unit_worker.close()
        assert len(reports) == 2 * len(accounts)
        assert all(report.complete for report in reports)
        assert account_digests(tmp_path) == {a: d for a, d in sim.org_digests().items() if d.count}
        assert ScanDirectory.open(tmp_path).verify() == []
        # Each account's role assumed once: its units shared its credentials.
        assert sim.org_info()["rpc_requests"]["Sts"]["AssumeRole"] == len(accounts)


@pytest.mark.asyncio
async def test_an_account_units_records_are_the_local_org_scans_bytes(tmp_path: Path) -> None:
    org = OrgSpec(members=2, fleet=FleetSpec(regions=2, services_per_region=3), total_instances=120)
    async with Simulator(org=org, seed=7) as sim:
        assert sim.org is not None
        accounts = [member.account_id for member in sim.org.scannable()]
        key = StaticCredentials(sim.access_key_id, sim.access_key_secret)
        scan_config = WorkerScanConfig(
            account_credentials=AssumedRoleSource(
                source=lambda: key, sts_endpoint=sim.sts_endpoint, allow_insecure_http=True
            ),
            endpoints=dict(sim.endpoints),
            allow_insecure_http=True,
        )
        params = ScanParams(regions=tuple(sim.regions), accounts=tuple(accounts))
        unit_worker = UnitWorker(DirectoryRunnerFactory(scan_config, str(tmp_path), params, "run1"), SLOT)
        await unit_worker.start()
        for unit in [WorkUnit(account, region) for account in accounts for region in sim.regions]:
            assert (await unit_worker.run(unit, 1)).complete
        await unit_worker.close()
        local: list[bytes] = []
        async with Scanner(
            credentials=key,
            endpoints=sim.endpoints,
            allow_insecure_http=True,
            sts_endpoint=sim.sts_endpoint,
            resourcemanager_endpoint=sim.resourcemanager_endpoint,
            accounts=Organization(),
        ) as scanner:
            async for page in scanner.scan().batches():
                local.extend(encode_jsonl(page).splitlines())
    written = part_lines(tmp_path)
    assert local
    assert sorted(written) == sorted(local)
    # AccountId, ClusterId, ServiceName, Service: the tags last, in the order the local engine writes them.
    tags = ["AccountId", "ClusterId", "ServiceName", "Service"]
    assert all(list(orjson.loads(line))[-4:] == tags for line in written)


@pytest.mark.asyncio
async def test_a_scan_for_a_unit_of_an_account_tags_its_records_at_the_source(sim: Simulator) -> None:
    # The runner's internal path: the records come out of the scan tagged (no pass over them after).
    async with config(sim).scanner(StaticCredentials(sim.access_key_id, sim.access_key_secret)) as scanner:
        pages = [page async for page in scanner.scan(regions=[sim.regions[0]], _account="1234").batches()]
    records = [record for page in pages for record in page]
    assert records
    assert all(
        list(record)[-4:] == ["AccountId", "ClusterId", "ServiceName", "Service"] for record in records
    )
    assert {record["AccountId"] for record in records} == {"1234"}
