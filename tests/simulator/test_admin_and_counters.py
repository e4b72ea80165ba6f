"""The server-side counters, and the admin routes that expose them (and the rest) over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from scanner.simulator import FaultConfig, FaultKind, Simulator, record_key_digest
from scanner.testing import FakeClock
from tests.simulator.helpers import RawClient

pytestmark = pytest.mark.asyncio


async def admin(
    session: aiohttp.ClientSession, sim: Simulator, method: str, route: str, **kwargs: Any
) -> Any:
    url = sim.endpoints[sim.regions[-1]] + "/_simulator/" + route
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def test_requests_responses_errors_and_bytes(sim: Simulator, raw: RawClient) -> None:
    first, second = sim.regions
    received = 0
    for _ in range(3):
        received += len((await raw.regions(first)).body)
    received += len((await raw.services(second)).body)
    received += len((await raw.instances(second, "nope")).body)
    received += len((await raw.call(first, "DescribeRegions", "/api/v2/elsewhere")).body)
    counters = sim.counters()
    assert counters.requests == {
        first: {"DescribeRegions": 3, "Unknown": 1},
        second: {"ListServices": 1, "ListServiceInstances": 1},
    }
    assert counters.total_requests == 6
    assert counters.requests_for("DescribeRegions") == 3
    assert counters.responses == {200: 4, 404: 2}
    assert counters.errors == {"InvalidService.NotFound": 1, "InvalidAction.NotFound": 1}
    assert counters.bytes_sent == received
    assert counters.bytes_sent_by_region[first] + counters.bytes_sent_by_region[second] == received
    assert counters.in_flight == 0
    sim.reset_counters()
    assert sim.counters().total_requests == 0


async def test_peak_concurrency_global_and_per_region(sim: Simulator, raw: RawClient) -> None:
    first, second = sim.regions
    sim.set_faults(latency_ms=300)
    replies = await asyncio.gather(
        *[raw.regions(first) for _ in range(12)], *[raw.regions(second) for _ in range(5)]
    )
    assert all(r.status == 200 for r in replies)
    counters = sim.counters()
    assert counters.peak_concurrency == 17
    assert counters.peak_concurrency_by_region == {first: 12, second: 5}


async def test_peak_rate_per_second(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(preset="small", seed=1, clock=clock) as sim:
        raw = RawClient(session, sim)
        region = sim.regions[0]
        for _ in range(7):
            await raw.regions(region)
        clock.advance(1.0)
        for _ in range(3):
            await raw.regions(region)
        for _ in range(2):
            await raw.services(region)
        assert sim.counters().peak_rate[region] == {"DescribeRegions": 7, "ListServices": 2}


async def test_admin_counters_info_now_and_reset(
    sim: Simulator, raw: RawClient, session: aiohttp.ClientSession
) -> None:
    await raw.regions(sim.regions[0])
    status, counters = await admin(session, sim, "GET", "counters")
    assert status == 200
    assert counters == sim.counters().to_dict()
    assert counters["requests"] == {sim.regions[0]: {"DescribeRegions": 1}}  # admin calls are not counted
    status, info = await admin(session, sim, "GET", "info")
    assert info["endpoints"] == sim.endpoints
    assert (info["instances"], info["services"], info["regions"]) == (1_000, 50, sim.regions)
    status, now = await admin(session, sim, "GET", "now")
    assert 0 <= now["now"] <= sim.now()
    assert (await admin(session, sim, "POST", "counters/reset"))[0] == 200
    assert sim.counters().total_requests == 0


async def test_admin_fleet_digest(sim: Simulator, session: aiohttp.ClientSession) -> None:
    status, digest = await admin(session, sim, "GET", "fleet-digest")
    assert status == 200
    assert digest == {"mode": "current", **record_key_digest(sim.current_keys()).to_dict()}
    _, content = await admin(session, sim, "GET", "fleet-digest", params={"content": "1"})
    assert content["count"] == digest["count"]
    assert content["digest"] != digest["digest"]
    now = sim.now()
    _, throughout = await admin(
        session, sim, "GET", "fleet-digest", params={"mode": "throughout", "t0": "0", "t1": str(now)}
    )
    assert throughout["count"] == 1_000
    status, error = await admin(session, sim, "GET", "fleet-digest", params={"mode": "throughout"})
    assert status == 400
    assert "t0" in error["error"]
    status, _ = await admin(session, sim, "GET", "fleet-digest", params={"mode": "sometimes"})
    assert status == 400


async def test_admin_faults_churn_and_forbid(
    sim: Simulator, raw: RawClient, session: aiohttp.ClientSession
) -> None:
    region = sim.regions[0]
    status, faults = await admin(session, sim, "PATCH", "faults", json={"unavailable_rate": 1.0})
    assert status == 200
    assert faults["unavailable_rate"] == 1.0
    assert sim.faults == FaultConfig(unavailable_rate=1.0)
    assert (await raw.regions(region)).status == 503
    status, faults = await admin(session, sim, "PUT", "faults", json={"latency_ms": 1})
    assert sim.faults == FaultConfig(latency_ms=1)
    assert (await raw.regions(region)).status == 200
    status, error = await admin(session, sim, "PUT", "faults", json={"reset_rate": 3})
    assert status == 400
    assert "reset_rate" in error["error"]
    status, error = await admin(session, sim, "PATCH", "faults", json={"bogus": 1})
    assert status == 400
    status, churn = await admin(session, sim, "PUT", "churn", json={"instance_starts": 2.5})
    assert churn["instance_starts"] == 2.5
    assert sim.churn.instance_starts == 2.5
    assert (await admin(session, sim, "POST", "forbid", json={"region": region, "forbidden": True}))[0] == 200
    assert (await raw.regions(region)).status == 403
    await admin(session, sim, "POST", "forbid", json={"region": region, "forbidden": False})
    assert (await raw.regions(region)).status == 200
    assert (await admin(session, sim, "GET", "nothing-here"))[0] == 404
    assert sim.counters().faults[FaultKind.FORBIDDEN] == 1


async def test_admin_counters_once_faults_were_counted(
    sim: Simulator, raw: RawClient, session: aiohttp.ClientSession
) -> None:
    region = sim.regions[0]
    sim.set_faults(rate_limit=0.001, burst=1, internal_error_rate=1.0)  # one request, then throttled
    replies = [await raw.regions(region) for _ in range(3)]
    assert sorted(r.status for r in replies) == [429, 429, 500]
    status, counters = await admin(session, sim, "GET", "counters")
    assert status == 200
    assert counters["faults"] == {"throttled": 2, "internal_error": 1}
    assert counters["throttled"] == {region: {"DescribeRegions": 2}}
    assert counters == orjson.loads(orjson.dumps(sim.counters().to_dict()))
