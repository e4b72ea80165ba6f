"""diff: ``eas-scan diff OLD NEW`` of two scan directories of N instances: wall time and peak RSS.

Both scans are written straight into scan directories (``ScanDirectory`` parts, JSON Lines) from the
simulator's fleet model, without HTTP: OLD is the fleet, NEW the same fleet with one instance in a
hundred removed, one in a hundred changed (``RestartCount`` + 1) and one in a hundred added. The
diff runs in a client process of its own (``benchmarks.clients.cli_client``); ``exact``: its
summary counts exactly those changes, every unit was compared, and the output has one line per
change. N is 1,000,000 (the ``large`` preset); in ``--quick``, 50,000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson

from benchmarks.harness import ROOT
from scanner.records import service_summary
from scanner.scandir import ScanDirectory, ScanParams
from scanner.simulator.fleet import Fleet
from scanner.simulator.spec import PRESETS, FleetSpec, LongTail

__all__ = ["run"]

_PAGE = 1000


def _spec(quick: bool) -> FleetSpec:
    if quick:
        return FleetSpec(regions=10, services_per_region=200, total_instances=50_000, distribution=LongTail())
    return PRESETS["large"]


def _records(spec: FleetSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    summaries: dict[tuple[str, str], dict[str, Any]] = {}
    for region, name, instance, service in Fleet(spec, 6).expected_records():
        summary = summaries.get((region, name))
        if summary is None:
            summary = summaries[(region, name)] = service_summary(service)
        yield region, dict(instance, ClusterId=region, ServiceName=name, Service=summary)


async def _write(spec: FleetSpec, old_path: Path, new_path: Path) -> dict[str, int]:
    old = ScanDirectory.create_or_open(old_path, ScanParams())
    new = ScanDirectory.create_or_open(new_path, ScanParams())
    counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    pages: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    writers: dict[str, Any] = {}
    for index, (region, record) in enumerate(_records(spec)):
        if region not in writers:
            writers[region] = (
                await old.part(None, region).__aenter__(),
                await new.part(None, region).__aenter__(),
            )
            pages[region] = ([], [])
        old_page, new_page = pages[region]
        old_page.append(record)
        kind = index % 100
        if kind == 0:
            counts["removed"] += 1
        elif kind == 1:
            new_page.append({**record, "RestartCount": int(record.get("RestartCount") or 0) + 1})
            counts["changed"] += 1
        else:
            new_page.append(record)
            counts["unchanged"] += 1
            if kind == 2:
                new_page.append({**record, "InstanceName": f"{record['InstanceName']}-added"})
                counts["added"] += 1
        if len(old_page) >= _PAGE:
            await writers[region][0].write(old_page)
            await writers[region][1].write(new_page)
            pages[region] = ([], [])
    for region, (old_writer, new_writer) in writers.items():
        old_page, new_page = pages[region]
        await old_writer.write(old_page)
        await new_writer.write(new_page)
        for writer in (old_writer, new_writer):
            await writer.commit("complete")
            await writer.__aexit__(None, None, None)
    for directory in (old, new):
        directory.expect((None, region) for region in writers)
        directory.finish_run()
    return counts


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    spec = _spec(quick)
    old_path, new_path = workdir / "diff-old", workdir / "diff-new"
    changes, summary = workdir / "diff-changes.jsonl", workdir / "diff-summary.json"
    expected = anyio.run(_write, spec, old_path, new_path)
    job = {
        "argv": ["diff", str(old_path), str(new_path), "-o", str(changes), "--summary", str(summary)],
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.clients", "cli"],
        cwd=ROOT,
        input=orjson.dumps(job),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    result = orjson.loads(done.stdout.splitlines()[-1])
    document = orjson.loads(summary.read_bytes())
    with changes.open("rb") as file:
        lines = sum(1 for _ in file)
    counted = {key: document[key] for key in expected}
    exact = (
        result["exit_code"] == 0
        and counted == expected
        and not document["not_compared"]
        and lines == expected["added"] + expected["removed"] + expected["changed"]
    )
    for path in (old_path, new_path):
        shutil.rmtree(path)
    changes.unlink()
    return {
        "instances": expected["removed"] + expected["changed"] + expected["unchanged"],
        "wall_s": round(result["wall_s"], 2),
        "cpu_s": round(result["cpu_s"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "changes": {key: expected[key] for key in ("added", "removed", "changed")},
        "exact": exact,
    }
