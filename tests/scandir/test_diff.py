from __future__ import annotations

import copy
import io
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.errors import ConfigError
from scanner.output.parquet import write_records
from scanner.output.sinks import JsonlEncoder
from scanner.scandir import ScanDirectory, ScanParams
from scanner.scandir.diff import diff_exit_code, diff_scans, status_exit_code
from scanner.simulator.spec import FleetSpec
from tests.scandir.fleet import pages, records_by_region

OLD = records_by_region()
FAILURE = {"region": "x", "service": None, "code": "Forbidden.RAM", "message": "no"}


def changed_copy() -> dict[str, list[dict[str, Any]]]:
    """OLD with, in cn-hangzhou: one instance gone, one new, one changed, one whose service changed."""
    new = {region: [dict(record) for record in records] for region, records in OLD.items()}
    hangzhou = new["cn-hangzhou"]
    del hangzhou[0]
    hangzhou[1]["Status"] = "Failed"
    hangzhou[1]["RestartCount"] = 99
    hangzhou[2]["Service"] = copy.deepcopy(hangzhou[2]["Service"])
    hangzhou[2]["Service"]["Status"] = "Stopped"
    added = dict(hangzhou[3], InstanceName="brand-new-instance")
    hangzhou.append(added)
    # Same record, keys in another order: unchanged.
    shanghai = new["cn-shanghai"]
    shanghai[0] = dict(reversed(list(shanghai[0].items())))
    return new


async def write_dir(
    path: Path,
    by_region: dict[str, list[dict[str, Any]]],
    statuses: dict[str, str],
    fmt: str = "jsonl",
) -> None:
    directory = ScanDirectory.create_or_open(path, ScanParams(format=fmt))
    for region, status in statuses.items():
        async with directory.part(None, region) as part:
            for page in pages(by_region[region]):
                await part.write(page)
            await part.commit(status, (FAILURE,) if status == "incomplete" else ())  # type: ignore[arg-type]


def write_jsonl(path: Path, by_region: dict[str, list[dict[str, Any]]]) -> None:
    path.write_bytes(b"".join(JsonlEncoder().encode(records) for records in by_region.values()))


def run_diff(old: Path | list[Path], new: Path, **options: Any) -> tuple[list[Any], dict[str, Any]]:
    out = io.BytesIO()
    summary = diff_scans(old, new, out, **options)
    return [orjson.loads(line) for line in out.getvalue().splitlines()], summary.to_json()


def by_change(changes: list[dict[str, Any]]) -> dict[str, list[tuple[str, list[str]]]]:
    result: dict[str, list[tuple[str, list[str]]]] = {}
    for change in changes:
        result.setdefault(change["change"], []).append((change["key"]["InstanceName"], change["fields"]))
    return {kind: sorted(items) for kind, items in result.items()}


def expected_changes() -> dict[str, list[tuple[str, list[str]]]]:
    hangzhou = OLD["cn-hangzhou"]
    return {
        "removed": [(hangzhou[0]["InstanceName"], [])],
        "added": [("brand-new-instance", [])],
        "changed": sorted(
            [
                (hangzhou[2]["InstanceName"], ["RestartCount", "Status"]),
                (hangzhou[3]["InstanceName"], ["Service.Status"]),
            ]
        ),
    }


@pytest.mark.asyncio
async def test_directories_compare_only_units_complete_in_both(tmp_path: Path) -> None:
    new = changed_copy()
    await write_dir(
        tmp_path / "old",
        OLD,
        {**dict.fromkeys(OLD, "complete"), "cn-shenzhen": "incomplete"},
    )
    await write_dir(
        tmp_path / "new",
        new,
        {region: "complete" for region in OLD if region != "ap-southeast-1"},
    )
    changes, summary = run_diff(tmp_path / "old", tmp_path / "new")
    assert by_change(changes) == expected_changes()
    removed = next(change for change in changes if change["change"] == "removed")
    assert removed["old"] == OLD["cn-hangzhou"][0]
    assert removed["new"] is None
    assert removed["key"] == {
        "AccountId": None,
        "ClusterId": "cn-hangzhou",
        "ServiceName": OLD["cn-hangzhou"][0]["ServiceName"],
        "InstanceName": OLD["cn-hangzhou"][0]["InstanceName"],
    }
    changed = next(change for change in changes if change["fields"] == ["RestartCount", "Status"])
    assert (changed["old"]["Status"], changed["new"]["Status"]) == ("Running", "Failed")
    assert (summary["added"], summary["removed"], summary["changed"]) == (1, 1, 2)
    assert summary["unchanged"] == 162 - 3 + 120  # cn-shenzhen and ap-southeast-1 not compared
    assert summary["not_compared"] == [
        {"account": None, "region": "ap-southeast-1", "old": "complete", "new": "missing"},
        {"account": None, "region": "cn-shenzhen", "old": "incomplete", "new": "complete"},
    ]
    units = {unit["region"]: unit for unit in summary["units"]}
    assert units["cn-hangzhou"] == {
        "account": None,
        "region": "cn-hangzhou",
        "added": 1,
        "removed": 1,
        "changed": 2,
        "unchanged": 159,
    }
    assert summary["exit_code"] == 3


def test_record_files_are_complete(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "old.jsonl", OLD)
    write_jsonl(tmp_path / "new.jsonl", changed_copy())
    changes, summary = run_diff(tmp_path / "old.jsonl", tmp_path / "new.jsonl")
    assert by_change(changes) == expected_changes()
    assert summary["not_compared"] == []
    assert summary["exit_code"] == 0
    same, summary = run_diff(tmp_path / "old.jsonl", tmp_path / "old.jsonl")
    assert same == []
    assert summary["unchanged"] == sum(map(len, OLD.values()))
    assert summary["exit_code"] == 0


@pytest.mark.asyncio
async def test_parquet_directory_against_a_record_file(tmp_path: Path) -> None:
    await write_dir(tmp_path / "old", OLD, dict.fromkeys(OLD, "complete"), fmt="parquet")
    write_records(tmp_path / "new.parquet", [r for records in changed_copy().values() for r in records])
    changes, summary = run_diff(tmp_path / "old", tmp_path / "new.parquet")
    assert by_change(changes) == expected_changes()
    assert summary["exit_code"] == 0


def test_many_small_buckets_give_the_same_changes(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "old.jsonl", OLD)
    write_jsonl(tmp_path / "new.jsonl", changed_copy())
    out = io.BytesIO()
    summary = diff_scans(tmp_path / "old.jsonl", tmp_path / "new.jsonl", out, bucket_records=20)
    changes = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert by_change(changes) == expected_changes()
    assert summary.buckets > 10
    assert summary.peak_bucket_records < 20 * 3


def test_memory_is_one_bucket_not_the_scans(tmp_path: Path) -> None:
    spec = FleetSpec(regions=2, services_per_region=30, total_instances=8_000)
    old = records_by_region(spec, seed=3)
    new = {
        region: [dict(record, RestartCount=12345) for record in records] for region, records in old.items()
    }
    write_jsonl(tmp_path / "old.jsonl", old)
    write_jsonl(tmp_path / "new.jsonl", new)
    scan_bytes = (tmp_path / "old.jsonl").stat().st_size
    del old, new
    changes = 0

    def count(line: bytes) -> None:
        nonlocal changes
        changes += 1

    tracemalloc.start()
    try:
        summary = diff_scans(tmp_path / "old.jsonl", tmp_path / "new.jsonl", count, bucket_records=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert changes == summary.totals.changed == 8_000
    assert summary.peak_bucket_records < 1000
    assert peak < scan_bytes / 4, (peak, scan_bytes)


def test_exit_codes_and_bad_inputs(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", OLD)
    summary = diff_scans(tmp_path / "a.jsonl", tmp_path / "a.jsonl", io.BytesIO())
    assert diff_exit_code(summary) == 0
    summary.not_compared.append({"account": None, "region": "x", "old": "incomplete", "new": "complete"})
    assert diff_exit_code(summary) == 3
    assert status_exit_code({"complete": True}) == 0
    assert status_exit_code({"complete": False}) == 3
    with pytest.raises(ConfigError, match="does not exist"):
        diff_scans(tmp_path / "nope", tmp_path / "a.jsonl", io.BytesIO())
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="not a scan directory"):
        diff_scans(tmp_path / "folder", tmp_path / "a.jsonl", io.BytesIO())


@pytest.mark.asyncio
async def test_a_scan_in_shard_directories_diffs_as_one(tmp_path: Path) -> None:
    regions = sorted(OLD)
    await write_dir(tmp_path / "a", OLD, dict.fromkeys(regions[::2], "complete"))
    await write_dir(tmp_path / "b", OLD, dict.fromkeys(regions[1::2], "complete"))
    write_jsonl(tmp_path / "new.jsonl", changed_copy())
    changes, summary = run_diff([tmp_path / "a", tmp_path / "b"], tmp_path / "new.jsonl")
    assert by_change(changes) == expected_changes()
    assert summary["exit_code"] == 0
    with pytest.raises(ConfigError, match="must all be scan directories"):
        diff_scans([tmp_path / "a", tmp_path / "new.jsonl"], tmp_path / "new.jsonl", io.BytesIO())
