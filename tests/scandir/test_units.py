"""The scan's stream tells when each (account, region) unit ends; the unit filter; the shard hash."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import pytest

from scanner import Scanner, StaticCredentials
from scanner.engine.events import UnitEnded, UnitsPlanned
from scanner.errors import ConfigError
from scanner.scandir.layout import Unit
from scanner.scandir.shard import Shard, shard_of
from scanner.simulator import Simulator
from tests.scandir.fleet import SPEC


def scanner_for(sim: Simulator) -> Scanner:
    return Scanner(
        credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret, sim.security_token),
        endpoints=dict(sim.endpoints),
        rng=random.Random(0),
    )


@pytest.mark.asyncio
async def test_each_unit_ends_after_its_last_batch() -> None:
    async with Simulator(spec=SPEC, seed=5) as sim:
        sim.forbid_region("cn-shenzhen")
        async with scanner_for(sim) as scanner:
            stream = scanner.scan()
            items = [item async for item in stream.events()]
            summary = stream.summary
    planned = items[0]
    assert isinstance(planned, UnitsPlanned)
    assert set(planned.regions) == set(planned.scanning) == set(SPEC.regions)  # type: ignore[arg-type]
    ended: dict[str, UnitEnded] = {}
    seen: dict[str, int] = {}
    for item in items[1:]:
        assert not isinstance(item, UnitsPlanned)
        if isinstance(item, UnitEnded):
            assert item.region not in ended
            ended[item.region] = item
            continue
        regions = {record["ClusterId"] for record in item}
        assert len(regions) == 1
        (region,) = regions
        assert region not in ended, "a batch of a unit after its end"
        seen[region] = seen.get(region, 0) + len(item)
    assert set(ended) == set(SPEC.regions)  # type: ignore[arg-type]
    for region, event in ended.items():
        assert event.account is None
        assert event.records == seen.get(region, 0) == summary.regions[region].instances
        assert event.complete == summary.regions[region].complete == (region != "cn-shenzhen")
    assert [failure.code for failure in ended["cn-shenzhen"].failures] == ["Forbidden.RAM"]
    assert ended["cn-beijing"].records == 0  # a region of one empty service still ends, complete


@pytest.mark.asyncio
async def test_records_and_batches_are_unchanged_by_the_events() -> None:
    async with Simulator(spec=SPEC, seed=5) as sim, scanner_for(sim) as scanner:
        records = [record async for record in scanner.scan()]
        pages: list[Any] = [page async for page in scanner.scan().batches()]
        truth = len(list(sim.expected_records()))
    assert len(records) == sum(len(page) for page in pages) == truth
    assert all(isinstance(page, list) and page for page in pages)


@pytest.mark.asyncio
async def test_the_unit_filter_lists_only_its_units_but_finds_every_region() -> None:
    wanted = {"cn-hangzhou", "cn-beijing"}
    async with Simulator(spec=SPEC, seed=5) as sim, scanner_for(sim) as scanner:
        sim.reset_counters()
        stream = scanner.scan(units=lambda account, region: region in wanted)
        items = [item async for item in stream.events()]
        requests = sim.counters().requests
    planned = items[0]
    assert isinstance(planned, UnitsPlanned)
    assert set(planned.regions) == set(SPEC.regions)  # type: ignore[arg-type]
    assert set(planned.scanning) == wanted
    assert {item.region for item in items if isinstance(item, UnitEnded)} == wanted
    assert {region for region, actions in requests.items() if sum(actions.values())} == wanted


def test_the_shard_hash_is_documented_and_stable() -> None:
    # sha256("region=cn-hangzhou"), first 8 bytes big-endian, mod N: golden values.
    import hashlib

    digest = int.from_bytes(hashlib.sha256(b"region=cn-hangzhou").digest()[:8], "big")
    assert shard_of(Unit(None, "cn-hangzhou"), 7) == digest % 7
    assert shard_of(Unit("123", "cn-hangzhou"), 7) == (
        int.from_bytes(hashlib.sha256(b"account=123/region=cn-hangzhou").digest()[:8], "big") % 7
    )
    # Python's hash seed does not move it.
    code = "from scanner.scandir.shard import shard_of; from scanner.scandir.layout import Unit; "
    code += "print([shard_of(Unit(a, r), 5) for a in (None, '1', '2') for r in ('cn-hangzhou', 'us-west-1')])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    # Every unit is in exactly one shard.
    units = [Unit(account, f"r-{n}") for account in (None, "a", "b") for n in range(50)]
    for count in (1, 2, 3, 8):
        shards = [Shard(index, count) for index in range(count)]
        for unit in units:
            assert sum(shard(unit.account, unit.region) for shard in shards) == 1


@pytest.mark.parametrize("text", ["1", "1/", "/2", "-1/2", "2/2", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        Shard.parse(text)
