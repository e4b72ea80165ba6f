from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from scanner.errors import ConfigError, UsageError
from scanner.output.sinks import CsvEncoder, JsonlEncoder
from scanner.scandir import (
    FileSystem,
    PartBusyError,
    ScanDirectory,
    ScanParams,
    Unit,
    combined_status,
    status_table,
)
from scanner.scandir.formats import iter_records
from tests.scandir.fleet import pages, records_by_region

BY_REGION = records_by_region()
FAILURE = {"region": "cn-shenzhen", "service": "s1", "code": "ListingUnstable", "message": "still changing"}


async def write_region(
    directory: ScanDirectory,
    region: str,
    records: list[dict[str, Any]],
    *,
    account: str | None = None,
    status: str = "complete",
    failures: tuple[dict[str, Any], ...] = (),
) -> None:
    async with directory.part(account, region) as part:
        for page in pages(records):
            await part.write(page)
        await part.commit(status, failures)  # type: ignore[arg-type]


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def read_dir(directory: ScanDirectory) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for unit, entry in directory.entries().items():
        records = [] if entry.file is None else list(iter_records(directory.path / entry.file, entry.format))
        result[unit.region] = records
    return result


@pytest.mark.asyncio
async def test_parts_entries_and_status(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path / "scan", ScanParams(regions=tuple(BY_REGION)))
    directory.expect((None, region) for region in BY_REGION)
    for region, records in BY_REGION.items():
        await write_region(directory, region, records)
    directory.finish_run()

    root = tmp_path / "scan"
    data = [name for name in files_under(root) if not name.startswith("_manifest")]
    assert data == [
        "region=ap-southeast-1/part-0.jsonl",
        "region=cn-hangzhou/part-0.jsonl",
        "region=cn-shanghai/part-0.jsonl",
        "region=cn-shenzhen/part-0.jsonl",
    ]  # cn-beijing has no instances: an entry, no file
    # The bytes the CLI writes for the same records.
    assert (root / "region=cn-hangzhou/part-0.jsonl").read_bytes() == b"".join(
        JsonlEncoder().encode(page) for page in pages(BY_REGION["cn-hangzhou"])
    )
    status = ScanDirectory.open(root).status()
    assert status["complete"] is True
    assert status["records"] == sum(map(len, BY_REGION.values()))
    assert status["missing"] == []
    assert status["parts"][0] == {
        "account": None,
        "region": "ap-southeast-1",
        "status": "complete",
        "records": 6,
        "failures": [],
    }
    assert status["finished_at"] is not None
    beijing = directory.entry(Unit(None, "cn-beijing"))
    assert beijing is not None
    assert (beijing.records, beijing.file, beijing.sha256) == (0, None, None)
    assert directory.verify() == []
    assert read_dir(directory) == BY_REGION


@pytest.mark.asyncio
async def test_status_names_incomplete_and_missing_units(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    directory.expect([(None, "cn-hangzhou"), (None, "cn-shenzhen"), (None, "cn-shanghai")])
    await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    await write_region(directory, "cn-shenzhen", BY_REGION["cn-shenzhen"][:10], status="incomplete",
                       failures=(FAILURE,))  # fmt: skip
    status = directory.status()
    assert status["complete"] is False
    assert status["missing"] == [{"account": None, "region": "cn-shanghai"}]
    shenzhen = next(part for part in status["parts"] if part["region"] == "cn-shenzhen")
    assert shenzhen == {
        "account": None,
        "region": "cn-shenzhen",
        "status": "incomplete",
        "records": 10,
        "failures": [FAILURE],
    }


@pytest.mark.asyncio
async def test_a_complete_part_has_no_failures(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    async with directory.part(None, "cn-hangzhou") as part:
        with pytest.raises(UsageError, match="incomplete"):
            await part.commit("complete", [FAILURE])
    assert directory.entries() == {}


@pytest.mark.asyncio
async def test_leaving_without_commit_discards_the_part(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    before = (tmp_path / "region=cn-hangzhou/part-0.jsonl").read_bytes()

    async def interrupted() -> None:
        async with directory.part(None, "cn-hangzhou") as part:
            await part.write(BY_REGION["cn-hangzhou"][:5])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await interrupted()
    assert [name for name in files_under(tmp_path) if "region=" in name and "_manifest" not in name] == [
        "region=cn-hangzhou/part-0.jsonl"
    ]
    assert (tmp_path / "region=cn-hangzhou/part-0.jsonl").read_bytes() == before
    assert directory.verify() == []


@pytest.mark.asyncio
async def test_a_rescan_replaces_the_part_and_removes_the_old_one(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    records = BY_REGION["cn-shenzhen"]
    await write_region(directory, "cn-shenzhen", records[:50], status="incomplete", failures=(FAILURE,))
    await write_region(directory, "cn-shenzhen", records)
    assert [p.name for p in (tmp_path / "region=cn-shenzhen").iterdir()] == ["part-1.jsonl"]
    entry = directory.entry(Unit(None, "cn-shenzhen"))
    assert entry is not None
    assert (entry.status, entry.records, entry.file) == ("complete", 300, "region=cn-shenzhen/part-1.jsonl")
    assert directory.verify() == []


@pytest.mark.asyncio
async def test_multi_account_layout(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(accounts=("111", "222")))
    for account in ("111", "222"):
        await write_region(directory, "cn-hangzhou", records_by_region(account=account)["cn-hangzhou"],
                           account=account)  # fmt: skip
    assert (tmp_path / "account=111/region=cn-hangzhou/part-0.jsonl").is_file()
    assert (tmp_path / "account=222/region=cn-hangzhou/part-0.jsonl").is_file()
    assert [(p["account"], p["region"]) for p in directory.status()["parts"]] == [
        ("111", "cn-hangzhou"),
        ("222", "cn-hangzhou"),
    ]
    with pytest.raises(UsageError, match="needs its account"):
        directory.part(None, "cn-hangzhou")
    single = ScanDirectory.create_or_open(tmp_path / "single", ScanParams())
    with pytest.raises(UsageError, match="has no account"):
        single.part("111", "cn-hangzhou")


def test_odd_names_are_percent_encoded() -> None:
    assert Unit("a/b", "..").folder == "account=a%2Fb/region=%2E."
    with pytest.raises(ConfigError, match="empty"):
        Unit(None, "").folder  # noqa: B018


@pytest.mark.asyncio
async def test_csv_parts_are_the_cli_csv(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(format="csv"))
    await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    encoder = CsvEncoder()
    expected = encoder.header() + b"".join(encoder.encode(page) for page in pages(BY_REGION["cn-hangzhou"]))
    data = (tmp_path / "region=cn-hangzhou/part-0.csv").read_bytes()
    assert data == expected
    assert len(list(csv.reader(io.StringIO(data.decode())))) == 1 + 162


def test_create_refuses_another_scan_and_foreign_folders(tmp_path: Path) -> None:
    ScanDirectory.create_or_open(tmp_path / "scan", ScanParams(regions=("cn-hangzhou",)))
    # The same parameters (in another order) join the scan.
    ScanDirectory.create_or_open(tmp_path / "scan", ScanParams(regions=("cn-hangzhou", "cn-hangzhou")))
    with pytest.raises(ConfigError, match=r'regions: \["cn-shanghai"\] vs \["cn-hangzhou"\]'):
        ScanDirectory.create_or_open(tmp_path / "scan", ScanParams(regions=("cn-shanghai",)))
    with pytest.raises(ConfigError, match="instance_status"):
        ScanDirectory.create_or_open(
            tmp_path / "scan",
            ScanParams(regions=("cn-hangzhou",), filters={"instance_status": "Running"}),
        )
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a scan directory"):
        ScanDirectory.create_or_open(tmp_path / "photos", ScanParams())
    with pytest.raises(ConfigError, match="not a scan directory"):
        ScanDirectory.open(tmp_path / "photos")


@pytest.mark.asyncio
async def test_resume_plan(tmp_path: Path) -> None:
    params = ScanParams(regions=tuple(BY_REGION))
    directory = ScanDirectory.create_or_open(tmp_path, params)
    directory.expect((None, region) for region in BY_REGION)
    await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    await write_region(directory, "cn-beijing", [])
    await write_region(directory, "cn-shenzhen", BY_REGION["cn-shenzhen"][:3], status="incomplete",
                       failures=(FAILURE,))  # fmt: skip
    # Leftovers of a killed run: a temp part, a part no entry names, a temp entry.
    (tmp_path / "region=cn-shanghai").mkdir()
    (tmp_path / "region=cn-shanghai/.part-0.jsonl.0123456789ab.tmp").write_bytes(b'{"half":')
    (tmp_path / "region=cn-hangzhou/part-7.jsonl").write_bytes(b"{}\n")
    (tmp_path / "_manifest/parts/.region=cn-shanghai.json.0123456789ab.tmp").write_bytes(b"{")

    with pytest.raises(ConfigError, match=r"cannot resume .*regions: \["):
        directory.resume_plan(ScanParams(regions=("cn-hangzhou",)))
    plan = ScanDirectory.create_or_open(tmp_path, params).resume_plan(params)
    assert plan.complete == {Unit(None, "cn-hangzhou"), Unit(None, "cn-beijing")}
    assert plan.incomplete == {Unit(None, "cn-shenzhen")}
    assert plan.missing == {Unit(None, "cn-shanghai"), Unit(None, "ap-southeast-1")}
    assert plan.to_scan == plan.incomplete | plan.missing
    assert plan.records == 162
    assert sorted(plan.removed) == [
        "_manifest/parts/.region=cn-shanghai.json.0123456789ab.tmp",
        "region=cn-hangzhou/part-7.jsonl",
        "region=cn-shanghai/.part-0.jsonl.0123456789ab.tmp",
    ]
    assert not (tmp_path / "region=cn-shanghai").exists()
    assert plan.should_scan(None, "cn-shenzhen")
    assert not plan.should_scan(None, "cn-hangzhou")
    assert plan.should_scan(None, "eu-central-1")  # discovered later: not complete, so scanned


@pytest.mark.asyncio
async def test_one_unit_one_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scanner.scandir.directory._LOCK_WAIT_S", 0.1)
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    other = ScanDirectory.create_or_open(tmp_path, ScanParams())
    async with directory.part(None, "cn-hangzhou") as part:
        await part.write(BY_REGION["cn-hangzhou"][:5])
        with pytest.raises(PartBusyError, match="another process"):
            async with other.part(None, "cn-hangzhou"):
                pass
        plan = other.resume_plan(ScanParams())
        assert plan.busy == {Unit(None, "cn-hangzhou")}
        assert plan.removed == ()  # the live writer's temporary file is left alone
        await part.commit()
    async with other.part(None, "cn-hangzhou") as part:  # the lock ended with the commit
        await part.commit()


class FullDisk(FileSystem):
    """Writes fail with ENOSPC once ``budget`` bytes were written (to files whose name has ``where``)."""

    def __init__(self, budget: int, where: str = "") -> None:
        self.budget = budget
        self.where = where
        self._names: dict[int, str] = {}

    def create(self, path: Path) -> int:
        fd = super().create(path)
        self._names[fd] = str(path)
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> None:
        if self.where in self._names.get(fd, ""):
            if len(data) > self.budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.budget -= len(data)
        super().write(fd, data)


@pytest.mark.asyncio
@pytest.mark.parametrize(("budget", "where"), [(0, ".part-"), (2_000_000, ".part-"), (0, "_manifest/parts")])
async def test_a_full_disk_leaves_the_directory_consistent(tmp_path: Path, budget: int, where: str) -> None:
    records = BY_REGION["cn-shenzhen"] * 20  # about 3 MB: several 1 MB writes
    good = ScanDirectory.create_or_open(tmp_path, ScanParams())
    await write_region(good, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    await write_region(good, "cn-shenzhen", records[:5], status="incomplete", failures=(FAILURE,))
    before = sorted(files_under(tmp_path))

    full = ScanDirectory.create_or_open(tmp_path, ScanParams(), fs=FullDisk(budget, where))
    with pytest.raises(OSError, match="No space left"):
        await write_region(full, "cn-shenzhen", records)

    assert sorted(files_under(tmp_path)) == before  # nothing left behind, nothing lost
    entry = good.entry(Unit(None, "cn-shenzhen"))
    assert entry is not None
    assert (entry.status, entry.records) == ("incomplete", 5)
    assert good.verify() == []
    plan = good.resume_plan(ScanParams())
    assert plan.removed == ()
    assert plan.incomplete == {Unit(None, "cn-shenzhen")}


def test_entries_are_one_file_per_unit(tmp_path: Path) -> None:
    ScanDirectory.create_or_open(tmp_path, ScanParams())
    scan = orjson.loads((tmp_path / "_manifest/scan.json").read_bytes())
    assert scan["params"] == {"format": "jsonl", "filters": {}, "regions": None, "accounts": None}
    assert scan["created_at"].endswith("Z")


@pytest.mark.asyncio
async def test_status_table(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    directory.expect([(None, "cn-hangzhou"), (None, "cn-shenzhen"), (None, "cn-shanghai")])
    await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    await write_region(directory, "cn-shenzhen", [], status="incomplete", failures=(FAILURE,))
    assert status_table(directory.status()) == [
        "account  region       status      records  failures",
        "-        cn-hangzhou  complete    162",
        "-        cn-shenzhen  incomplete  0        s1: ListingUnstable",
        "-        cn-shanghai  missing     0",
        "1 complete, 1 incomplete, 1 missing; 162 records; NOT complete",
    ]


@pytest.mark.asyncio
async def test_a_cancelled_writer_leaves_no_lock_and_no_leftover(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    with anyio.CancelScope() as scope:
        async with directory.part(None, "cn-hangzhou") as part:
            await part.write(BY_REGION["cn-hangzhou"])
            scope.cancel()
            await part.commit()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with directory.part(None, "cn-shanghai"):
            pass
    assert directory.verify() == []
    assert not [name for name in files_under(tmp_path) if name.endswith(".tmp")]
    for region in ("cn-hangzhou", "cn-shanghai"):  # both locks were released
        await write_region(directory, region, BY_REGION[region])
    assert directory.status()["records"] == 162 + 120


@pytest.mark.asyncio
async def test_one_scan_in_several_directories(tmp_path: Path) -> None:
    params = ScanParams(regions=tuple(BY_REGION))
    shards = [ScanDirectory.create_or_open(tmp_path / f"shard-{i}", params) for i in (0, 1)]
    for index, (region, records) in enumerate(sorted(BY_REGION.items())):
        shards[index % 2].expect((None, region) for region in BY_REGION)
        await write_region(shards[index % 2], region, records)
    # A unit in both: the complete entry counts.
    await write_region(shards[1], "ap-southeast-1", [], status="incomplete", failures=(FAILURE,))
    status = combined_status(shards)
    assert status["complete"] is True
    assert status["records"] == sum(map(len, BY_REGION.values()))
    assert [part["region"] for part in status["parts"]] == sorted(BY_REGION)
    assert shards[0].status()["complete"] is False  # one shard alone misses the other's regions
    other = ScanDirectory.create_or_open(tmp_path / "other", ScanParams(regions=("cn-hangzhou",)))
    with pytest.raises(ConfigError, match="hold different scans"):
        combined_status([*shards, other])


@pytest.mark.asyncio
async def test_opening_waits_out_a_cleanup_of_another_process(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    fs = FileSystem()
    held = fs.lock(tmp_path / "_manifest/locks/region=cn-hangzhou.lock")  # as resume_plan does, briefly
    assert held is not None
    async with anyio.create_task_group() as tg:

        async def release_soon() -> None:
            await anyio.sleep(0.2)
            fs.unlock(held)

        tg.start_soon(release_soon)
        await write_region(directory, "cn-hangzhou", BY_REGION["cn-hangzhou"])
    assert directory.status()["records"] == 162


@pytest.mark.asyncio
async def test_a_shard_cleans_only_its_own_units(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    for region in ("cn-hangzhou", "cn-shanghai"):
        await write_region(directory, region, BY_REGION[region])
        (tmp_path / f"region={region}/part-9.jsonl").write_bytes(b"{}\n")
    plan = directory.resume_plan(ScanParams(), owns=lambda unit: unit.region == "cn-hangzhou")
    assert plan.removed == ("region=cn-hangzhou/part-9.jsonl",)
    assert plan.complete == {Unit(None, "cn-hangzhou"), Unit(None, "cn-shanghai")}


@pytest.mark.asyncio
async def test_resume_scans_again_a_complete_unit_whose_part_is_missing_or_cut(tmp_path: Path) -> None:
    """An entry says complete but its part is gone or shorter (removed by hand, or by a writer an
    asyncio cancellation cut in two, before that was fixed): --resume must not keep it."""
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    for region in ("cn-hangzhou", "cn-shanghai", "cn-shenzhen", "ap-southeast-1"):
        await write_region(directory, region, BY_REGION[region])
    await write_region(directory, "cn-beijing", [])  # no file: nothing to miss
    (tmp_path / "region=cn-hangzhou/part-0.jsonl").unlink()
    cut = tmp_path / "region=cn-shanghai/part-0.jsonl"
    cut.write_bytes(cut.read_bytes()[:-10])
    (tmp_path / "region=ap-southeast-1/part-0.jsonl").unlink()  # another shard's: left to it

    plan = directory.resume_plan(ScanParams(), owns=lambda unit: unit.region != "ap-southeast-1")
    damaged = {Unit(None, "cn-hangzhou"), Unit(None, "cn-shanghai")}
    assert plan.damaged == damaged
    assert plan.incomplete == damaged
    assert plan.complete == {Unit(None, r) for r in ("cn-shenzhen", "cn-beijing", "ap-southeast-1")}
    assert plan.records == len(BY_REGION["cn-shenzhen"]) + len(BY_REGION["ap-southeast-1"])
    assert plan.should_scan(None, "cn-hangzhou")
    assert plan.removed == ()  # the cut part is the entry's: replaced by the rescan, not removed here

    for unit in sorted(plan.to_scan, key=lambda unit: unit.region):
        await write_region(directory, unit.region, BY_REGION[unit.region])
    again = directory.resume_plan(ScanParams(), owns=lambda unit: unit.region != "ap-southeast-1")
    assert (again.damaged, again.incomplete) == (frozenset(), frozenset())
    for region in ("cn-hangzhou", "cn-shanghai"):
        entry = directory.entry(Unit(None, region))
        assert entry is not None
        assert entry.file is not None
        assert list(iter_records(tmp_path / entry.file, "jsonl")) == BY_REGION[region]
    assert [path.name for path in (tmp_path / "region=cn-shanghai").iterdir()] == ["part-1.jsonl"]


@pytest.mark.asyncio
async def test_status_is_not_complete_while_a_complete_part_is_missing_or_cut(tmp_path: Path) -> None:
    """``eas-scan status`` exits 0 only for a directory whose records are all there: an entry that
    says complete over a part that is gone or shorter is named ``damaged`` (a stat per part; a full
    re-read is ``verify``), and ``--resume`` scans it again."""
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    directory.expect([(None, region) for region in ("cn-hangzhou", "cn-shanghai", "cn-beijing")])
    for region in ("cn-hangzhou", "cn-shanghai"):
        await write_region(directory, region, BY_REGION[region])
    await write_region(directory, "cn-beijing", [])  # no file: nothing to miss
    assert directory.status()["complete"] is True
    assert directory.status()["damaged"] == []

    (tmp_path / "region=cn-hangzhou/part-0.jsonl").unlink()
    cut = tmp_path / "region=cn-shanghai/part-0.jsonl"
    cut.write_bytes(cut.read_bytes()[:-10])
    status = directory.status()
    assert status["complete"] is False
    assert status["damaged"] == [
        {"account": None, "region": "cn-hangzhou", "file": "region=cn-hangzhou/part-0.jsonl"},
        {"account": None, "region": "cn-shanghai", "file": "region=cn-shanghai/part-0.jsonl"},
    ]
    assert [part["status"] for part in status["parts"]] == ["complete"] * 3  # what the entries say
    table = status_table(status)
    assert table[2].split()[:3] == ["-", "cn-hangzhou", "damaged"]
    assert "--resume scans it again" in table[2]
    assert table[-1] == (
        f"1 complete, 0 incomplete, 2 damaged, 0 missing; "
        f"{len(BY_REGION['cn-hangzhou']) + len(BY_REGION['cn-shanghai'])} records; NOT complete"
    )
