"""A real scan of the simulator into a scan directory (the wiring the CLI will do), then a resume."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from scanner import Scanner, StaticCredentials
from scanner.records import service_summary
from scanner.scandir import (
    PartRouter,
    ScanDirectory,
    ScanParams,
    Unit,
    outcomes_from_summary,
)
from scanner.scandir.formats import iter_records
from scanner.simulator import Simulator
from tests.scandir.fleet import SPEC


async def scan_into(sim: Simulator, directory: ScanDirectory, regions: list[str]) -> dict[str, Any]:
    plan = directory.resume_plan(directory.params)
    directory.expect((None, region) for region in sim.regions)
    todo = [region for region in regions if plan.should_scan(None, region)]
    scanner = Scanner(
        credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret, sim.security_token),
        endpoints={region: sim.endpoints[region] for region in todo},
        rng=random.Random(0),
    )
    async with scanner, PartRouter(directory, plan=plan) as router:
        stream = scanner.scan(regions=todo)
        async for page in stream.batches():
            await router.write(page)
        summary = stream.summary.to_dict()
        await router.commit_all(outcomes_from_summary(summary, units=[Unit(None, r) for r in todo]))
    directory.finish_run()
    return summary


def expected(sim: Simulator) -> dict[str, list[dict[str, Any]]]:
    by_region: dict[str, list[dict[str, Any]]] = {region: [] for region in sim.regions}
    for region, name, instance, service in sim.expected_records():
        by_region[region].append(
            dict(instance, ClusterId=region, ServiceName=name, Service=service_summary(service))
        )
    return by_region


def key(record: dict[str, Any]) -> str:
    return str(record["InstanceName"])


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_scan_resume_after_a_forbidden_region_is_exact(tmp_path: Path, fmt: str) -> None:
    async with Simulator(spec=SPEC, seed=5) as sim:
        regions = list(sim.regions)
        directory = ScanDirectory.create_or_open(tmp_path, ScanParams(format=fmt, regions=tuple(regions)))
        sim.forbid_region("cn-shenzhen")
        summary = await scan_into(sim, directory, regions)
        assert summary["complete"] is False
        status = directory.status()
        assert status["complete"] is False
        shenzhen = next(part for part in status["parts"] if part["region"] == "cn-shenzhen")
        assert shenzhen["status"] == "incomplete"
        assert shenzhen["failures"][0]["code"] == "Forbidden.RAM"

        sim.forbid_region("cn-shenzhen", False)
        summary = await scan_into(sim, directory, regions)
        assert summary["regions"].keys() == {"cn-shenzhen"}  # only what was missing was scanned
        truth = expected(sim)

    status = directory.status()
    assert status["complete"] is True
    assert status["records"] == sum(map(len, truth.values()))
    for unit, entry in directory.entries().items():
        records = [] if entry.file is None else list(iter_records(tmp_path / entry.file, fmt))
        assert sorted(records, key=key) == sorted(truth[unit.region], key=key)
    assert directory.verify() == []


def test_outcomes_from_summary() -> None:
    summary = {
        "regions": {
            "a": {"complete": True, "error": None},
            "b": {"complete": False, "error": "Forbidden.RAM: no"},
            "c": {"complete": True, "error": None},
            "d": {"complete": False, "error": None},
        },
        "failures": [{"region": "c", "service": "s", "code": "ListingUnstable", "message": "m"}],
    }
    outcomes = outcomes_from_summary(summary, account="111", units=[Unit("111", "e")])
    assert outcomes[Unit("111", "a")] == ("complete", [])
    assert outcomes[Unit("111", "b")][1][0]["message"] == "Forbidden.RAM: no"
    assert outcomes[Unit("111", "c")] == ("incomplete", summary["failures"])
    assert outcomes[Unit("111", "d")][0] == "incomplete"
    assert outcomes[Unit("111", "e")][1][0]["code"] == "NotScanned"
