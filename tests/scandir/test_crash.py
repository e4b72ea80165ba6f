"""Crash safety: processes killed at random points or at each step of a commit, and shards side by side."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from scanner.scandir import ScanDirectory, Unit
from scanner.scandir.formats import iter_records
from tests.scandir import writer
from tests.scandir.fleet import records_by_region
from tests.scandir.writer import CRASH_POINTS

ROOT = Path(__file__).resolve().parents[2]
TRUTH = records_by_region()


def start(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scandir.writer", str(directory), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run(directory: Path, *args: str) -> dict[str, Any]:
    """The writer, in this process (quicker than starting one)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        anyio.run(writer.main, [str(directory), *args])
    result: dict[str, Any] = orjson.loads(out.getvalue())
    return result


def assert_consistent(path: Path) -> None:
    """Every entry's part is whole (size and sha256); nothing else looks like a part to a reader."""
    if not (path / "_manifest/scan.json").exists():  # killed while it started
        assert data_files(path) == set()
        return
    directory = ScanDirectory.open(path)
    assert directory.verify() == []
    for unit, entry in directory.entries().items():
        if entry.file is not None:
            records = list(iter_records(path / entry.file, entry.format))
            assert len(records) == entry.records
            expected = TRUTH[unit.region]
            if entry.status == "complete":
                assert records == expected
            else:
                assert records == expected[: len(records)]


def data_files(path: Path) -> set[str]:
    """What a hive reader would read: visible files outside _manifest."""
    return {
        str(file.relative_to(path))
        for file in path.rglob("*")
        if file.is_file() and not any(part.startswith(("_", ".")) for part in file.relative_to(path).parts)
    }


def assert_exact(path: Path) -> None:
    directory = ScanDirectory.open(path)
    status = directory.status()
    assert status["complete"] is True, status
    assert status["records"] == sum(map(len, TRUTH.values()))
    by_region = {
        unit.region: [] if entry.file is None else list(iter_records(path / entry.file, entry.format))
        for unit, entry in directory.entries().items()
    }
    assert by_region == TRUTH
    named = {entry.file for entry in directory.entries().values() if entry.file}
    assert data_files(path) == named  # no leftover a reader would take for data
    assert not list(path.rglob(".*.tmp"))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_step_of_a_commit(tmp_path: Path, point: str) -> None:
    scan = tmp_path / "scan"
    run(scan, "--incomplete", "cn-shenzhen")  # every region done, cn-shenzhen incomplete
    process = start(scan, "--crash-at", point)  # rescans cn-shenzhen and dies in its commit
    process.communicate(timeout=120)
    assert process.returncode == 137
    assert_consistent(scan)
    entry = ScanDirectory.open(scan).entry(Unit(None, "cn-shenzhen"))
    assert entry is not None
    committed = point in ("after-entry-rename", "before-old-part-removal")
    assert entry.status == ("complete" if committed else "incomplete")
    result = run(scan)
    if entry.status == "incomplete":
        assert result["written"] == ["cn-shenzhen"]
    else:
        assert result["written"] == []
    assert result["removed"]  # the crash left something behind, and the resume removed it
    assert_exact(scan)


@pytest.mark.parametrize(
    ("point", "region", "fmt"),
    [
        *((point, "cn-hangzhou", "jsonl") for point in CRASH_POINTS if point != "before-old-part-removal"),
        ("after-part-rename", "cn-hangzhou", "parquet"),
        # A region with no instances: its temporary part is removed, its entry names no file.
        ("before-entry-rename", "cn-beijing", "jsonl"),
        ("after-entry-rename", "cn-beijing", "jsonl"),
    ],
)
def test_a_crash_in_the_first_commit_of_a_region(tmp_path: Path, point: str, region: str, fmt: str) -> None:
    """No previous entry to fall back on: the region is committed whole or has no entry at all."""
    scan = tmp_path / "scan"
    process = start(scan, "--format", fmt, "--crash-at", point, "--crash-in", region)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 137, err.decode()
    assert_consistent(scan)
    committed = point == "after-entry-rename"
    assert (ScanDirectory.open(scan).entry(Unit(None, region)) is not None) == committed
    result = run(scan, "--format", fmt)
    assert (region in result["written"]) == (not committed)  # resumed: scanned only if not committed
    assert bool(result["removed"]) == (not committed)  # its leftovers (temporary files, a lone part)
    assert_exact(scan)


def test_sigkill_at_random_points_then_resume_is_exact(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    rng = random.Random(14)
    killed_mid_run = 0
    for _ in range(6):
        process = start(scan, "--page", "10", "--pause", "0.02")  # about 1.2 s of writing
        assert process.stderr is not None
        process.stderr.readline()  # "ready": started, leftovers removed, about to write
        time.sleep(rng.uniform(0.0, 0.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        process.communicate(timeout=120)
        assert_consistent(scan)
        if process.returncode == 0:
            break
    assert killed_mid_run >= 2
    run(scan, "--page", "10")
    assert_exact(scan)


def test_two_processes_write_one_directory(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    shards = [start(scan, "--shard", f"{index}/2", "--page", "10", "--pause", "0.01") for index in (0, 1)]
    written: list[str] = []
    for process in shards:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        written.extend(orjson.loads(out)["written"])
    assert sorted(written) == sorted(TRUTH)
    assert_exact(scan)
    runs = {entry.run_id for entry in ScanDirectory.open(scan).entries().values()}
    assert len(runs) == 2
