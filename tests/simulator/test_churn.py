"""Churn on an injected clock, and the ground truth it leaves behind."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest

from scanner.simulator import ChurnRates, FleetSpec, InstanceKey, Simulator
from scanner.simulator.model import RUNNING
from scanner.testing import FakeClock
from tests.simulator.helpers import RawClient

pytestmark = pytest.mark.asyncio

REGION = "cn-hangzhou"


async def test_hand_checked_scenario() -> None:
    """Five events at known times; every interval query answered by hand."""
    clock = FakeClock()
    spec = FleetSpec(regions=(REGION,), instance_counts=((3, 2),), service_names=(("alpha", "beta"),))
    async with Simulator(spec=spec, seed=1, clock=clock) as sim:
        fleet = sim.fleet
        alpha, beta = fleet.service(REGION, "alpha"), fleet.service(REGION, "beta")
        assert alpha is not None
        assert beta is not None
        name = {f"A{i}": (REGION, "alpha", alpha.instance_name(i)) for i in range(5)}
        name |= {f"B{i}": (REGION, "beta", beta.instance_name(i)) for i in range(2)}

        def keys(*labels: str) -> set[InstanceKey]:
            return {name[label] for label in labels}

        def at(t: float) -> float:
            clock.advance(t - sim.now())
            return sim.now()

        fleet.stop_instance(alpha, 1, at(10))  # A1 stops at 10
        a3 = fleet.start_instance(alpha, at(20), 2_000_000_000, RUNNING)  # A3 starts at 20
        assert a3 == 3
        fleet.delete_service(beta, at(30))  # B0 and B1 go at 30
        gamma = fleet.create_service(REGION, at(40), 2_000_000_040, 1, [RUNNING])  # G0 comes at 40
        name["G0"] = (REGION, gamma.name, gamma.instance_name(0))
        fleet.stop_instance(alpha, 3, at(50))  # A3 stops at 50
        at(60)

        assert sim.existed_throughout(0, 5) == keys("A0", "A1", "A2", "B0", "B1")
        assert sim.existed_throughout(5, 15) == keys("A0", "A2", "B0", "B1")
        assert sim.existed_throughout(10, 10) == keys("A0", "A2", "B0", "B1")  # gone at the moment it stops
        assert sim.existed_throughout(20, 29) == keys("A0", "A2", "A3", "B0", "B1")
        assert sim.existed_throughout(15, 45) == keys("A0", "A2")
        assert sim.existed_throughout(0, 60) == keys("A0", "A2")
        assert sim.existed_at_any(0, 10) == keys("A0", "A1", "A2", "B0", "B1")
        assert sim.existed_at_any(15, 45) == keys("A0", "A2", "A3", "B0", "B1", "G0")
        assert sim.existed_at_any(55, 60) == keys("A0", "A2", "G0")
        assert sim.existed_at_any(-100, -1) == keys("A0", "A1", "A2", "B0", "B1")
        assert sim.current_keys() == keys("A0", "A2", "G0")

        async with aiohttp.ClientSession() as session:
            raw = RawClient(session, sim)
            listed = await raw.all_instances(REGION, "alpha")
            assert [i["InstanceName"] for i in listed] == [name["A0"][2], name["A2"][2]]
            assert (await raw.instances(REGION, "beta")).json()["Code"] == "InvalidService.NotFound"
            services = {s["ServiceName"]: s["TotalInstance"] for s in await raw.all_services(REGION)}
            assert services == {"alpha": 2, gamma.name: 1}


async def test_churn_follows_the_clock_and_the_rates() -> None:
    clock = FakeClock()
    rates = ChurnRates(
        instance_starts=2, instance_stops=1, instance_restarts=1, service_creates=0.1, service_deletes=0.05
    )
    async with Simulator(preset="small", seed=3, clock=clock, churn=rates) as sim:
        assert sim.fleet.instance_count == 1_000
        clock.advance(1_000)
        sim.current_keys()  # brings the fleet up to now
        events = sim.counters().churn
        for kind, rate in zip(ChurnRates.kinds(), rates.rates(), strict=True):
            applied = events[kind]
            expected = rate * 1_000
            assert abs(applied - expected) <= 5 * expected**0.5 + 1
        assert sim.fleet.instance_count == len(sim.current_keys()) == len(sim.existed_at_any(1_000, 1_000))


@pytest.mark.parametrize("kind", ChurnRates.kinds())
async def test_each_kind_of_churn_happens_only_when_its_rate_is_set(kind: str) -> None:
    clock = FakeClock()
    # `kind` names one of the float rates; typed Any as mypy cannot tell it from the int field.
    only: dict[str, Any] = {kind: 0.5}
    async with Simulator(preset="small", seed=4, clock=clock, churn=ChurnRates(**only)) as sim:
        clock.advance(200)
        sim.current_keys()
        events = sim.counters().churn
        assert abs(events[kind] - 100) <= 5 * 100**0.5 + 1
        assert all(events[other] == 0 for other in ChurnRates.kinds() if other != kind)


async def test_no_churn_rates_means_a_still_fleet() -> None:
    clock = FakeClock()
    async with Simulator(preset="small", seed=4, clock=clock) as sim:
        before = sim.current_keys()
        clock.advance(3_600)
        assert sim.current_keys() == before
        assert all(count == 0 for count in sim.counters().churn.values())


async def test_the_same_seed_gives_the_same_churn_however_often_one_looks() -> None:
    rates = ChurnRates(
        instance_starts=5, instance_stops=3, instance_restarts=3, service_creates=1, service_deletes=1
    )

    async def run(seed: int, steps: int) -> list[tuple[str, str, dict[str, object]]]:
        clock = FakeClock()
        async with Simulator(preset="small", seed=seed, clock=clock, churn=rates) as sim:
            for _ in range(steps):
                clock.advance(60 / steps)
                sim.current_keys()
            return [(r, s, i) for r, s, i, _ in sim.expected_records()]

    once = await run(7, 1)
    assert once == await run(7, 60)
    assert once != await run(8, 1)


async def test_new_instances_start_after_all_existing_ones_and_counts_stay_true() -> None:
    clock = FakeClock()
    async with Simulator(
        preset="small",
        seed=5,
        clock=clock,
        churn=ChurnRates(instance_starts=3, instance_stops=2, instance_restarts=2),
    ) as sim:
        latest_initial = max(i["StartTime"] for _, _, i, _ in sim.expected_records())
        clock.advance(100)
        records = list(sim.expected_records())
        new = [i for *_, i, _ in records if i["StartTime"] > latest_initial]
        assert len(new) > 100
        assert all(i["RestartCount"] == 0 for i in new if not i["LastState"])
        restarted = [s for s in sim.fleet.live_services() if s.restarts]
        assert restarted
        by_service: dict[tuple[str, str], Counter[str]] = {}
        for region, name, instance, _ in records:
            by_service.setdefault((region, name), Counter())[str(instance["Status"])] += 1
        for service in sim.fleet.live_services():
            rendered = service.render_service()
            statuses = by_service.get((service.region, service.name), Counter())
            assert rendered["TotalInstance"] == sum(statuses.values())
            assert rendered["RunningInstance"] == statuses["Running"]
            assert rendered["PendingInstance"] == statuses["Pending"]
        for service in restarted:
            index, (count, _) = next(iter(service.restarts.items()))
            if service.is_alive(index):
                instance = service.render_instance(index)
                assert instance["RestartCount"] >= count
                assert instance["LastState"][0]["finishedAt"] >= instance["StartTime"]


async def test_ground_truth_agrees_with_snapshots() -> None:
    clock = FakeClock()
    rates = ChurnRates(instance_starts=4, instance_stops=4, service_creates=0.5, service_deletes=0.5)
    async with Simulator(preset="small", seed=9, clock=clock, churn=rates) as sim:
        snapshots: list[tuple[float, set[InstanceKey]]] = []
        for _ in range(40):
            snapshots.append((sim.now(), sim.current_keys()))
            clock.advance(0.5)
        t0, first = snapshots[5]
        t1, last = snapshots[30]
        # Names are never reused, so "throughout" is exactly "at both ends".
        assert sim.existed_throughout(t0, t1) == first & last
        union = set().union(*(keys for t, keys in snapshots if t0 <= t <= t1))
        at_any = sim.existed_at_any(t0, t1)
        assert union <= at_any
        # Anything no snapshot saw was born and gone between two looks.
        lifetimes = {key: (born, died) for key, born, died in sim.fleet.lifetimes()}
        for key in at_any - union:
            born, died = lifetimes[key]
            assert died - born < 0.5
        assert sim.existed_throughout(t0, t1) <= at_any


async def test_churn_invalidates_cached_pages_and_deleted_services_vanish(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    spec = FleetSpec(regions=(REGION,), instance_counts=((5, 4),), service_names=(("alpha", "beta"),))
    async with Simulator(spec=spec, seed=1, clock=clock) as sim:
        raw = RawClient(session, sim)
        before = await raw.all_instances(REGION, "alpha")
        assert len(before) == 5
        again = await raw.all_instances(REGION, "alpha")
        assert again == before
        assert sim.counters().page_cache_hits >= 1
        alpha = sim.fleet.service(REGION, "alpha")
        assert alpha is not None
        clock.advance(1)
        sim.fleet.stop_instance(alpha, 2, sim.now())
        after = await raw.all_instances(REGION, "alpha")
        assert after == before[:2] + before[3:]
        beta = sim.fleet.service(REGION, "beta")
        assert beta is not None
        sim.fleet.delete_service(beta, sim.now())
        assert (await raw.instances(REGION, "beta")).status == 404
        assert [s["ServiceName"] for s in await raw.all_services(REGION)] == ["alpha"]


async def test_churn_rates_change_at_runtime() -> None:
    clock = FakeClock()
    async with Simulator(preset="small", seed=2, clock=clock) as sim:
        clock.advance(100)
        assert sim.fleet.instance_count == 1_000
        sim.set_churn(ChurnRates(instance_starts=10))
        clock.advance(10)
        grown = len(sim.current_keys())
        assert grown > 1_050
        sim.set_churn(ChurnRates())
        clock.advance(100)
        assert len(sim.current_keys()) == grown
        assert sim.churn == ChurnRates()
