"""The scanner against the embedded simulator over real loopback HTTP: the issue's acceptance tests.

Exact output on the presets; the same exact output under faults and an untold rate limit; no
survivor missed under churn; configured bounds never exceeded (the simulator's own counters say
so); a forbidden region gives a partial summary; early exit, cancellation and a slow consumer
leave nothing behind.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from scanner import (
    Concurrency,
    RateLimit,
    RetryPolicy,
    Scanner,
    ScanSummary,
    StaticCredentials,
    Timeouts,
)
from scanner.records import RECORD_TAGS, service_summary
from scanner.simulator import ChurnRates, FaultConfig, FaultKind, Simulator

pytestmark = pytest.mark.asyncio

Key = tuple[str, str, str]


def scanner_for(sim: Simulator, **kwargs: Any) -> Scanner:
    kwargs.setdefault("rng", random.Random(0))
    return Scanner(
        credentials=StaticCredentials(sim.access_key_id, sim.access_key_secret, sim.security_token),
        endpoints=sim.endpoints,
        **kwargs,
    )


async def scan_all(sim: Simulator, **kwargs: Any) -> tuple[list[dict[str, Any]], ScanSummary]:
    scan_args = kwargs.pop("scan_args", {})
    async with scanner_for(sim, **kwargs) as scanner:
        stream = scanner.scan(**scan_args)
        records = [record async for record in stream]
    return records, stream.summary


def key_of(record: dict[str, Any]) -> Key:
    return (record["ClusterId"], record["ServiceName"], record["InstanceName"])


def assert_exact(records: Iterable[dict[str, Any]], sim: Simulator) -> None:
    """Every instance the simulator has, once, every field as the API gave it, tags right."""
    expected = {
        (region, name, instance["InstanceName"]): (instance, service)
        for region, name, instance, service in sim.expected_records()
    }
    records = list(records)
    keys = [key_of(record) for record in records]
    assert len(keys) == len(set(keys)), "an instance appears twice"
    assert set(keys) == set(expected)
    for record in records:
        instance, service = expected[key_of(record)]
        assert {k: v for k, v in record.items() if k not in RECORD_TAGS} == instance
        assert record["Service"] == service_summary(service)


async def test_small_preset_exactly() -> None:
    async with Simulator(preset="small", seed=11) as sim:
        records, summary = await scan_all(sim)
        assert_exact(records, sim)
    assert summary.complete
    assert summary.records == len(records) == sim.fleet.instance_count
    assert set(summary.regions) == set(sim.regions)
    assert summary.failures == ()
    assert summary.retries == summary.throttled == 0


async def test_medium_preset_exactly() -> None:
    async with Simulator(preset="medium", seed=12) as sim:
        records, summary = await scan_all(sim)
        assert_exact(records, sim)
        counters = sim.counters()
    assert summary.complete
    assert len(records) > 40_000
    # One request per page, nothing wasted: the simulator counted exactly what we sent.
    assert counters.total_requests == summary.requests


async def test_all_regions_via_describe_regions() -> None:
    async with Simulator(preset="small", seed=13) as sim:
        records, summary = await scan_all(sim, scan_args={"regions": "all"})
        assert_exact(records, sim)
        assert sim.counters().requests[sim.regions[0]]["DescribeRegions"] == 1
    assert summary.complete


async def test_same_exact_output_under_faults_and_an_untold_rate_limit() -> None:
    faults = FaultConfig(
        internal_error_rate=0.05,
        unavailable_rate=0.05,
        reset_rate=0.03,
        truncate_rate=0.03,
        not_json_rate=0.02,
        rate_limit=40,
        burst=5,
        throttle_status=400,
    )
    async with Simulator(preset="small", seed=14, faults=faults) as sim:
        records, summary = await scan_all(sim, retry=RetryPolicy(max_attempts=10))
        counters = sim.counters()
        faults_seen = dict(counters.faults)
        assert_exact(records, sim)
    assert summary.complete
    assert faults_seen.get(FaultKind.INTERNAL_ERROR, 0) > 0
    assert faults_seen.get(FaultKind.RESET, 0) > 0
    assert faults_seen.get(FaultKind.TRUNCATED, 0) > 0
    # Every throttle the server sent was seen as one; every fault cost exactly one retry.
    assert summary.throttled == counters.throttled_total > 0
    assert summary.retries == sum(faults_seen.values())
    assert summary.requests == counters.total_requests


async def test_throttling_with_429_and_retry_after_is_honoured() -> None:
    faults = FaultConfig(rate_limit=30, burst=3, throttle_status=429, retry_after_ms=200)
    async with Simulator(preset="small", seed=15, faults=faults) as sim:
        records, summary = await scan_all(sim)
        assert_exact(records, sim)
        throttled = sim.counters().throttled_total
    assert summary.complete
    assert summary.throttled == throttled > 0


async def test_no_instance_that_existed_throughout_is_missed_under_churn() -> None:
    churn = ChurnRates(
        instance_starts=300, instance_stops=300, instance_restarts=100, service_creates=20, service_deletes=20
    )
    async with Simulator(preset="small", seed=16, churn=churn, faults=FaultConfig(latency_ms=3)) as sim:
        t0 = sim.now()
        records, summary = await scan_all(sim, concurrency=Concurrency(total=8, per_region=4))
        t1 = sim.now()
        survivors = sim.existed_throughout(t0, t1)
        ever = sim.existed_at_any(t0, t1)
        churned = sum(sim.counters().churn.values())
    keys = [key_of(record) for record in records]
    assert churned > 50, "the fleet did not change during the scan"
    assert len(keys) == len(set(keys)), "an instance appears twice"
    assert survivors <= set(keys), f"missed {len(survivors - set(keys))} instances that existed throughout"
    assert set(keys) <= ever, "an instance that never existed during the scan"
    assert summary.failures == ()


async def test_configured_concurrency_and_rate_are_never_exceeded() -> None:
    async with Simulator(preset="small", seed=17, faults=FaultConfig(latency_ms=5)) as sim:
        records, summary = await scan_all(
            sim, concurrency=Concurrency(total=6, per_region=4, pages_per_listing=2), rate_limit=RateLimit()
        )
        counters = sim.counters()
        assert_exact(records, sim)
    assert counters.peak_concurrency <= 6
    assert max(counters.peak_concurrency_by_region.values()) <= 4
    assert counters.peak_concurrency >= 5  # the bound was actually reached, so it means something

    async with Simulator(preset="small", seed=17) as sim:
        records, summary = await scan_all(sim, rate_limit=RateLimit(requests_per_second=25))
        peak_rate = sim.counters().peak_rate
        assert_exact(records, sim)
    # GCRA pacing allows 25/s plus a 0.05 s burst; a clock second can hold at most one more.
    for by_action in peak_rate.values():
        for action, peak in by_action.items():
            assert peak <= 25 + 2, (action, peak)
    assert summary.complete


async def test_a_forbidden_region_gives_a_partial_summary() -> None:
    async with Simulator(preset="small", seed=18) as sim:
        denied, allowed = sim.regions
        sim.forbid_region(denied)
        records, summary = await scan_all(sim)
        expected_allowed = {
            (r, s, i["InstanceName"]) for r, s, i, _ in sim.expected_records() if r == allowed
        }
    assert {key_of(record) for record in records} == expected_allowed
    assert not summary.complete
    assert summary.regions[allowed].complete
    assert not summary.regions[denied].complete
    error = summary.regions[denied].error
    assert error is not None
    assert error.startswith("Forbidden.RAM")
    assert [(f.region, f.code) for f in summary.failures] == [(denied, "Forbidden.RAM")]


async def test_a_wrong_secret_in_every_region_is_fatal() -> None:
    from scanner import ScanFailedError

    async with Simulator(preset="small", seed=19) as sim:
        scanner = Scanner(credentials=StaticCredentials(sim.access_key_id, "wrong"), endpoints=sim.endpoints)
        async with scanner:
            stream = scanner.scan()
            with pytest.raises(ScanFailedError, match="SignatureDoesNotMatch"):
                [record async for record in stream]
    assert not stream.summary.complete


async def test_sts_credentials_work() -> None:
    async with Simulator(preset="small", seed=20, security_token="sts-token-1") as sim:
        records, summary = await scan_all(sim)
        assert_exact(records, sim)
    assert summary.complete


async def test_timeouts_are_retried() -> None:
    faults = FaultConfig(slow_rate=0.1, slow_ms=1500)
    async with Simulator(preset="small", seed=21, faults=faults) as sim:
        records, summary = await scan_all(sim, timeouts=Timeouts(connect=1, read=0.5, total=1))
        assert_exact(records, sim)
        slow = sim.counters().faults.get(FaultKind.SLOW, 0)
    assert summary.complete
    assert slow > 0
    assert summary.retries >= slow


def scanner_tasks() -> list[asyncio.Task[Any]]:
    """Live tasks running scanner code (not the simulator's server tasks, not this test)."""
    current = asyncio.current_task()
    tasks = []
    for task in asyncio.all_tasks():
        if task is current:
            continue
        text = repr(task.get_coro())
        if "ScanJob" in text or "scanner.engine" in text or "Scanner" in text:
            tasks.append(task)
    return tasks


async def test_early_break_leaves_no_task_or_session_behind() -> None:
    async with Simulator(preset="medium", seed=22) as sim:
        with anyio.fail_after(5):
            async with scanner_for(sim) as scanner:
                stream = scanner.scan()
                async for _ in stream:
                    break
        await anyio.lowlevel.checkpoint()
        assert scanner_tasks() == []
        in_flight = sim.counters().in_flight
    gc.collect()  # an unclosed session or stream would warn, and warnings are errors here
    assert stream.summary.cancelled
    assert in_flight == 0


async def test_cancelling_the_caller_stops_within_a_second() -> None:
    async with Simulator(preset="medium", seed=23, faults=FaultConfig(latency_ms=20)) as sim:
        seen = 0
        with anyio.move_on_after(0.5):
            async with scanner_for(sim) as scanner:
                async for _ in scanner.scan():
                    seen += 1
        started = anyio.current_time()
        await anyio.lowlevel.checkpoint()
        assert scanner_tasks() == []
        assert anyio.current_time() - started < 1.0
    gc.collect()
    assert seen > 0


async def test_a_slow_consumer_bounds_what_is_fetched_ahead() -> None:
    concurrency = Concurrency(total=8, per_region=8, pages_per_listing=4, services_per_region=4)
    async with Simulator(preset="medium", seed=24) as sim:
        async with scanner_for(sim, buffer_pages=2, concurrency=concurrency) as scanner:
            stream = scanner.scan()
            await stream.__anext__()
            await anyio.sleep(0.3)  # the reader stalls; the scanner must stall too
            requests = sim.counters().requests
            data_pages = stream.statistics().records / 100
            listed = sum(by_action.get("ListServiceInstances", 0) for by_action in requests.values())
            # Pages fetched but not handed over are bounded by Concurrency.total (8) plus the
            # stream's buffer (2) plus the page being read; each open listing (2 regions x 4) may
            # also have looked at its newest instance once.
            assert listed <= 8 + 2 + 1 + 2 * 4
            assert data_pages <= 8 + 2 + 1
            rest = [record async for record in stream]
        assert len(rest) + 1 == sim.fleet.instance_count
    assert stream.summary.complete
