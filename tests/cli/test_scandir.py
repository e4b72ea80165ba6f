"""``eas-scan scan --output-dir``, ``--resume``, ``--shard``, ``status`` and ``diff`` (issues 14 and 15).

Against the simulator on a portal thread (``conftest``): in-process where the flag matrix is checked,
as subprocesses where a process must die (SIGKILL) or several must write one directory at once.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import BlockingPortal

from scanner.scandir import ScanDirectory, Unit
from scanner.scandir.formats import iter_records
from scanner.scandir.fs import OsFileSystem
from scanner.scandir.shard import Shard, shard_of
from scanner.simulator import FaultConfig
from scanner.simulator.churn import ChurnRates
from scanner.simulator.spec import FleetSpec
from scanner.testing import FakeClock
from tests.cli.conftest import EAS_SCAN, Run, ThreadedSimulator, _start, assert_records_exact, run_process

#: Six regions of a few services each: enough units for shards, small enough to scan in a blink.
SPEC = FleetSpec(regions=6, services_per_region=5, total_instances=1_200)


@pytest.fixture(scope="module")
def fleet(portal: BlockingPortal) -> Iterator[ThreadedSimulator]:
    """Six regions that no test changes."""
    manager, sim = _start(portal, spec=SPEC, seed=3)
    try:
        yield sim
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def slow_fleet(portal: BlockingPortal) -> Iterator[ThreadedSimulator]:
    """The same six regions, 40 ms a request: a scan that takes a couple of seconds to kill."""
    manager, sim = _start(portal, spec=SPEC, seed=3, faults=FaultConfig(latency_ms=40.0))
    try:
        yield sim
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def creds(fleet: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(fleet, monkeypatch)


def use_keys(sim: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)


def directory_records(*paths: Path) -> list[dict[str, Any]]:
    """Every record of the complete parts of scan directories (the shards' directories of one scan)."""
    records: list[dict[str, Any]] = []
    for path in paths:
        directory = ScanDirectory.open(path)
        assert directory.verify() == []
        for entry in directory.entries().values():
            if entry.file is not None:
                records.extend(iter_records(path / entry.file, entry.format))
    return records


def by_unit(path: Path) -> dict[Unit, tuple[str, int, list[bytes]]]:
    """Each unit's status, record count and sorted records: a directory's content, times aside."""
    directory = ScanDirectory.open(path)
    found: dict[Unit, tuple[str, int, list[bytes]]] = {}
    for unit, entry in directory.entries().items():
        records = [] if entry.file is None else list(iter_records(path / entry.file, entry.format))
        lines = sorted(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) for record in records)
        found[unit] = (entry.status, entry.records, lines)
    return found


def scan_args(sim: ThreadedSimulator, *extra: str) -> list[str]:
    return ["scan", *sim.endpoint_args(), "--no-progress", *extra]


@pytest.mark.usefixtures("creds")
def test_a_scan_into_a_directory_is_the_ground_truth(
    fleet: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / "scan"
    result = run_cli(*scan_args(fleet, "--output-dir", str(out), "--summary", str(tmp_path / "s.json")))
    assert result.code == 0, result.stderr
    assert result.stdout == b""
    assert_records_exact(directory_records(out), fleet.expected())
    entries = ScanDirectory.open(out).entries()
    assert {unit.region for unit in entries} == set(fleet.regions)
    assert all(entry.status == "complete" for entry in entries.values())
    assert orjson.loads((tmp_path / "s.json").read_bytes())["complete"] is True

    status = run_cli("status", str(out), "--json")
    assert status.code == 0
    document = orjson.loads(status.stdout)
    assert list(document)[:3] == ["complete", "records", "parts"]
    assert document["complete"] is True
    assert document["records"] == len(fleet.expected())
    assert {part["region"] for part in document["parts"]} == set(fleet.regions)
    for part in document["parts"]:
        assert set(part) == {"account", "region", "status", "records", "failures"}
        assert part["account"] is None
        assert part["status"] == "complete"
        assert part["failures"] == []
    table = run_cli("status", str(out))
    assert table.code == 0
    assert b"6 complete, 0 incomplete, 0 missing" in table.stdout


@pytest.mark.usefixtures("creds")
def test_a_shard_that_owns_no_region_is_complete(
    fleet: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    count = 16  # more shards than the six regions: some own none of them
    owned = {shard_of(Unit(None, region), count) for region in fleet.regions}
    empty = min(set(range(count)) - owned)
    out, summary = tmp_path / "scan", tmp_path / "s.json"
    result = run_cli(
        *scan_args(fleet, "--output-dir", str(out), "--shard", f"{empty}/{count}", "--summary", str(summary))
    )
    assert result.code == 0, result.stderr  # nothing was asked of it, and nothing is missing from it
    document = orjson.loads(summary.read_bytes())
    assert document["complete"] is True
    assert document["records"] == 0
    assert ScanDirectory.open(out).entries() == {}


@pytest.mark.usefixtures("creds")
def test_usage_errors_before_any_request(
    fleet: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / "scan"
    assert run_cli(*scan_args(fleet, "--output-dir", str(out), "--regions", fleet.regions[0])).code == 0
    fleet.reset_counters()
    cases = [
        (["--output-dir", str(out), "-o", str(tmp_path / "x.jsonl")], "not both"),
        (["--shard", "0/2"], "--shard needs --output-dir"),
        (["--resume"], "--resume needs --output-dir"),
        (["--output-dir", str(tmp_path / "s"), "--shard", "2/2"], "0 <= I < N"),
        (["--output-dir", str(tmp_path / "s"), "--shard", "two"], "I/N"),
        (["--format", "parquet"], "not written to stdout"),
        # the directory holds a scan of one region: a resume of another scan names the difference
        (["--output-dir", str(out), "--resume", "--regions", fleet.regions[1]], "regions: "),
        (["--output-dir", str(out), "--resume", "--instance-status", "Running"], "instance_status: "),
    ]
    for extra, message in cases:
        result = run_cli(*scan_args(fleet, *extra))
        assert result.code == 2, (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert fleet.counters().total_requests == 0
    assert run_cli("status", str(tmp_path / "nowhere")).code == 2
    assert run_cli("diff", str(out), str(tmp_path / "nowhere")).code == 2


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "pyarrow").mkdir()
    (blocker / "pyarrow" / "__init__.py").write_text("raise ImportError('no pyarrow here')\n")
    result = run_process(
        ["scan", "--simulate", "--output-dir", str(tmp_path / "scan"), "--format", "parquet"],
        env={"PYTHONPATH": str(blocker)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "eas-fleet-scanner[parquet]" in result.stderr
    assert not (tmp_path / "scan").exists()


@pytest.mark.usefixtures("creds")
def test_parquet_through_the_cli_equals_json_lines(
    fleet: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    jsonl = run_cli(*scan_args(fleet, "-o", str(tmp_path / "a.jsonl")))
    one_file = run_cli(*scan_args(fleet, "-o", str(tmp_path / "a.parquet"), "--format", "parquet"))
    folder = run_cli(*scan_args(fleet, "--output-dir", str(tmp_path / "p"), "--format", "parquet"))
    assert jsonl.code == one_file.code == folder.code == 0
    expected = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert_records_exact(expected, fleet.expected())
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "a.parquet").num_rows == len(expected)
    assert_records_exact(list(iter_records(tmp_path / "a.parquet", "parquet")), fleet.expected())
    assert_records_exact(directory_records(tmp_path / "p"), fleet.expected())
    # The directory is a hive-partitioned dataset: region is a column read from the folder names.
    dataset = pq.read_table(tmp_path / "p", partitioning="hive")
    assert dataset.num_rows == len(expected)
    assert set(dataset.column("region").to_pylist()) == set(fleet.regions)
    # And the diff of the JSON Lines and the Parquet scans of one fleet finds nothing.
    diff = run_cli("diff", str(tmp_path / "a.jsonl"), str(tmp_path / "p"))
    assert diff.code == 0, diff.stderr
    assert diff.stdout == b""


@pytest.mark.usefixtures("creds")
def test_a_full_disk_during_a_part_keeps_the_directory_consistent(
    fleet: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scan"
    writes = 0
    real_write = OsFileSystem.write

    def write(self: OsFileSystem, fd: int, data: bytes | memoryview) -> None:
        nonlocal writes
        writes += 1
        if writes > 3:  # the fourth write of a part: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, fd, data)

    monkeypatch.setattr(OsFileSystem, "write", write)
    result = run_cli(*scan_args(fleet, "--output-dir", str(out), "--page-size", "10"))
    assert result.code == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert "--resume" in result.stderr
    directory = ScanDirectory.open(out)
    assert directory.verify() == []  # whatever was committed is whole
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") and "_manifest" not in p.parts]
    assert run_cli("status", str(out)).code == 3
    monkeypatch.setattr(OsFileSystem, "write", real_write)
    resumed = run_cli(*scan_args(fleet, "--output-dir", str(out), "--resume"))
    assert resumed.code == 0, resumed.stderr
    assert_records_exact(directory_records(out), fleet.expected())
    assert run_cli("status", str(out)).code == 0


def test_sigkill_at_random_points_then_resume_is_exact(
    slow_fleet: ThreadedSimulator, fleet: ThreadedSimulator, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "scan"

    def argv(folder: Path, sim: ThreadedSimulator = slow_fleet) -> list[str]:
        # About 250 requests of 40 ms, 3 at a time: a scan of about 3 s, cut by every kill below.
        return scan_args(sim, "--output-dir", str(folder), "--page-size", "10", "--concurrency", "3")

    env = {**os.environ, **slow_fleet.env()}
    cut = 0  # kills that landed mid-scan (not before the directory existed, nor after the end)
    for round_ in range(2):
        process = subprocess.Popen(
            [EAS_SCAN, *argv(out), *(["--resume"] if round_ else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not (out / "_manifest" / "scan.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert ScanDirectory.open(out).verify() == [], f"seed {seed}"
        cut += not ScanDirectory.open(out).status()["complete"]
    assert cut >= 1, f"seed {seed}: every kill came after the scan had ended"
    resumed = run_process([*argv(out), "--resume"], env=slow_fleet.env())
    assert resumed.returncode == 0, (seed, resumed.stderr)
    assert_records_exact(directory_records(out), slow_fleet.expected())
    # The leftovers of the killed runs are gone: every file is a part an entry names.
    named = {entry.file for entry in ScanDirectory.open(out).entries().values() if entry.file}
    assert {str(p.relative_to(out)) for p in out.glob("region=*/*")} == named
    # Equal to a scan never interrupted (of the same fleet, without the latency), times aside.
    whole = tmp_path / "whole"
    assert run_process(argv(whole, fleet), env=fleet.env()).returncode == 0
    assert by_unit(out) == by_unit(whole), f"seed {seed}"


def test_two_shard_processes_write_the_unsharded_scan(fleet: ThreadedSimulator, tmp_path: Path) -> None:
    shared, apart = tmp_path / "shared", [tmp_path / "s0", tmp_path / "s1"]
    owners = {region: shard_of(Unit(None, region), 2) for region in fleet.regions}
    assert set(owners.values()) == {0, 1}, owners  # the stable hash spreads these six regions
    processes = [
        subprocess.Popen(
            [EAS_SCAN, *scan_args(fleet, "--output-dir", str(folder), "--shard", f"{index}/2")],
            env={**os.environ, **fleet.env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for folder, index in ((shared, 0), (shared, 1), (apart[0], 0), (apart[1], 1))
    ]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    directory = ScanDirectory.open(shared)
    runs = {run["run_id"]: run["pid"] for run in directory.runs()}
    pids = {process.pid: index for index, process in enumerate(processes[:2])}
    for unit, entry in directory.entries().items():  # each unit written by its own shard, once
        assert pids[runs[entry.run_id]] == owners[unit.region]
    records = directory_records(shared)
    assert_records_exact(records, fleet.expected())
    assert_records_exact(directory_records(*apart), fleet.expected())
    assert Shard(0, 2)(None, fleet.regions[0]) == (owners[fleet.regions[0]] == 0)
    # status and diff take the shards' directories of one scan together
    status = run_process(["status", *map(str, apart), "--json"])
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["records"] == len(fleet.expected())
    assert run_process(["status", str(apart[0])]).returncode == 3  # half a scan: the other shard is missing
    diff = run_process(["diff", str(shared), ",".join(map(str, apart))])
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout == ""


def test_diff_of_two_scans_with_changes_and_an_incomplete_region(
    portal: BlockingPortal, run_cli: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_dir, new_dir, changes, summary = (tmp_path / n for n in ("old", "new", "changes.jsonl", "sum.json"))
    # One fleet, on a clock of the test's: scanned, then 60 s of churn later, one region refusing.
    clock = FakeClock()
    churn = ChurnRates(instance_starts=1.0, instance_stops=1.0, instance_restarts=1.0)
    manager, sim = _start(portal, spec=SPEC, seed=3, clock=clock, churn=churn)
    try:
        use_keys(sim, monkeypatch)
        assert run_cli(*scan_args(sim, "--output-dir", str(old_dir))).code == 0
        old_records = sim.expected()
        clock.advance(60.0)
        broken = sim.regions[0]
        sim.forbid_region(broken)
        result = run_cli(*scan_args(sim, "--output-dir", str(new_dir), "--max-attempts", "1"))
        assert result.code == 3, result.stderr
        new_records = sim.expected()
    finally:
        manager.__exit__(None, None, None)
    assert run_cli("status", str(new_dir)).code == 3

    diff = run_cli("diff", str(old_dir), str(new_dir), "-o", str(changes), "--summary", str(summary))
    assert diff.code == 3, diff.stderr
    assert f"NOT compared (incomplete in a scan): {broken}" in diff.stderr
    lines = [orjson.loads(line) for line in changes.read_bytes().splitlines()]
    document = orjson.loads(summary.read_bytes())
    assert document["not_compared"] == [
        {"account": None, "region": broken, "old": "complete", "new": "incomplete"}
    ]

    def keyed(records: dict[Any, dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {key: record for key, record in records.items() if key[0] != broken}

    before, after = keyed(old_records), keyed(new_records)
    added = {key for key in after if key not in before}
    removed = {key for key in before if key not in after}
    changed = {key for key in after if key in before and after[key] != before[key]}
    assert added
    assert removed
    assert changed
    found: dict[str, set[tuple[str, str, str]]] = {kind: set() for kind in ("added", "removed", "changed")}
    for line in lines:
        key = line["key"]
        assert key["AccountId"] is None
        assert key["ClusterId"] != broken
        found[line["change"]].add(triple := (key["ClusterId"], key["ServiceName"], key["InstanceName"]))
        if line["change"] == "changed":
            assert line["fields"]
            assert (line["old"], line["new"]) == (before[triple], after[triple])
            assert all(before[triple].get(f) != after[triple].get(f) for f in line["fields"] if "." not in f)
        elif line["change"] == "added":
            assert (line["old"], line["new"]) == (None, after[triple])
        else:
            assert (line["old"], line["new"]) == (before[triple], None)
    assert found == {"added": added, "removed": removed, "changed": changed}
    assert (document["added"], document["removed"], document["changed"]) == (
        len(added),
        len(removed),
        len(changed),
    )
    assert document["exit_code"] == 3


def test_sigterm_stops_cleanly_and_resume_finishes(slow_fleet: ThreadedSimulator, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    argv = scan_args(slow_fleet, "--output-dir", str(out), "--page-size", "10", "--concurrency", "3")
    process = subprocess.Popen(
        [EAS_SCAN, *argv],
        env={**os.environ, **slow_fleet.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = out / "_manifest" / "parts"
    deadline = time.monotonic() + 30
    while not (parts.is_dir() and any(parts.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    directory = ScanDirectory.open(out)
    assert directory.verify() == []
    # Only committed parts and their entries: the regions in progress were dropped, no temporary file.
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    named = {entry.file for entry in directory.entries().values() if entry.file}
    assert {str(p.relative_to(out)) for p in out.glob("region=*/part-*")} == named
    finished = [run for run in directory.runs() if run["finished_at"]]
    assert len(finished) == 1
    resumed = run_process([*argv, "--resume"], env=slow_fleet.env())
    assert resumed.returncode == 0, resumed.stderr
    assert_records_exact(directory_records(out), slow_fleet.expected())
