"""Every fault knob happens at its configured rate, only then, and reproducibly.

Rates are checked twice: on the seeded decision sequence itself (many draws, tight tolerance),
and end to end over HTTP (fewer requests; what the client saw must equal what the counters say).
"""

from __future__ import annotations

import asyncio
import math
import random
import time

import aiohttp
import anyio
import pytest
from alibabacloud_eas20210701 import models as eas_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException

from scanner.errors import ConfigError
from scanner.simulator import FaultConfig, FaultKind, Simulator
from scanner.simulator.faults import FaultInjector
from scanner.testing import FakeClock
from tests.simulator.helpers import RawClient, sdk_client

RATE_FIELDS = {
    FaultKind.INTERNAL_ERROR: "internal_error_rate",
    FaultKind.SERVICE_UNAVAILABLE: "unavailable_rate",
    FaultKind.RESET: "reset_rate",
    FaultKind.TRUNCATED: "truncate_rate",
    FaultKind.NOT_JSON: "not_json_rate",
}
N = 20_000


def tolerance(n: int, p: float) -> float:
    """Five standard deviations of a binomial count: a seeded sequence stays well inside."""
    return 5 * math.sqrt(n * p * (1 - p)) + 1


# --- the decision sequence ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(RATE_FIELDS))
def test_each_random_fault_happens_at_its_rate_and_only_it(kind: FaultKind) -> None:
    others = {field: 0.05 for k, field in RATE_FIELDS.items() if k is not kind}
    injector = FaultInjector(FaultConfig(**{RATE_FIELDS[kind]: 0.2}, **others), random.Random(1))  # type: ignore[arg-type]
    kinds = [injector.decide("r", "a").kind for _ in range(N)]
    assert abs(kinds.count(kind) - 0.2 * N) < tolerance(N, 0.2)
    for other in RATE_FIELDS:
        if other is not kind:
            assert abs(kinds.count(other) - 0.05 * N) < tolerance(N, 0.05)


@pytest.mark.parametrize("kind", list(RATE_FIELDS))
def test_rate_zero_never_happens(kind: FaultKind) -> None:
    others = {field: 0.2 for k, field in RATE_FIELDS.items() if k is not kind}
    injector = FaultInjector(FaultConfig(slow_rate=0.5, **others), random.Random(2))  # type: ignore[arg-type]
    assert all(injector.decide("r", "a").kind is not kind for _ in range(N))


def test_slow_and_latency_and_jitter() -> None:
    injector = FaultInjector(
        FaultConfig(latency_ms=10, jitter_ms=20, slow_rate=0.3, slow_ms=1000), random.Random(3)
    )
    decisions = [injector.decide("r", "a") for _ in range(N)]
    slow = [d for d in decisions if d.slow]
    assert abs(len(slow) - 0.3 * N) < tolerance(N, 0.3)
    for d in decisions:
        base = d.delay - (1.0 if d.slow else 0.0)
        assert 0.010 <= base < 0.030 + 1e-9
    mean = sum(d.delay - (1.0 if d.slow else 0.0) for d in decisions) / N
    assert abs(mean - 0.020) < 0.0005
    quiet = FaultInjector(FaultConfig(latency_ms=7), random.Random(3))
    assert {quiet.decide("r", "a").delay for _ in range(100)} == {0.007}
    never = FaultInjector(FaultConfig(jitter_ms=5, slow_ms=1000), random.Random(3))
    assert not any(never.decide("r", "a").slow for _ in range(N))


def test_nothing_configured_draws_nothing() -> None:
    rng = random.Random(4)
    state = rng.getstate()
    injector = FaultInjector(FaultConfig(), rng)
    assert all(injector.decide("r", "a") == injector.decide("r", "b") for _ in range(100))
    assert rng.getstate() == state


def test_same_seed_same_sequence_different_seed_different() -> None:
    config = FaultConfig(internal_error_rate=0.1, reset_rate=0.1, jitter_ms=5, slow_rate=0.1)

    def sequence(seed: int) -> list[object]:
        injector = FaultInjector(config, random.Random(seed))
        return [injector.decide("r", "a") for _ in range(500)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def test_scope_limits_faults_to_regions_and_actions() -> None:
    injector = FaultInjector(
        FaultConfig(
            internal_error_rate=1.0, latency_ms=5, regions=frozenset({"a"}), actions=frozenset({"X"})
        ),
        random.Random(5),
    )
    assert injector.decide("a", "X").kind is FaultKind.INTERNAL_ERROR
    assert injector.decide("b", "X").kind is None
    assert injector.decide("b", "X").delay == 0
    assert injector.decide("a", "Y").kind is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"internal_error_rate": 1.5},
        {"reset_rate": -0.1},
        {"internal_error_rate": 0.6, "unavailable_rate": 0.6},
        {"latency_ms": -1},
        {"rate_limit": 0},
        {"burst": 0},
        {"throttle_status": 503},
        {"retry_after_ms": 0},
        {"retry_after_ms": "soon"},
    ],
)
def test_bad_fault_configs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_config_round_trips_through_json_shape() -> None:
    config = FaultConfig(latency_ms=3, rate_limit=10, retry_after_ms="auto", regions=frozenset({"b", "a"}))
    assert FaultConfig.from_mapping(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        FaultConfig.from_mapping({"latency": 3})


# --- end to end -------------------------------------------------------------------------------------


async def statuses(raw: RawClient, region: str, n: int) -> list[int]:
    return [(await raw.services(region, {"PageSize": "1"})).status for _ in range(n)]


@pytest.mark.asyncio
async def test_server_errors_at_their_rate_over_http(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    assert await statuses(raw, region, 20) == [200] * 20  # no faults configured: none happen
    sim.set_faults(internal_error_rate=0.25, unavailable_rate=0.25)
    n = 400
    seen = await statuses(raw, region, n)
    counters = sim.counters()
    assert seen.count(500) == counters.faults[FaultKind.INTERNAL_ERROR] == counters.errors["InternalError"]
    assert (
        seen.count(503)
        == counters.faults[FaultKind.SERVICE_UNAVAILABLE]
        == counters.errors["ServiceUnavailable"]
    )
    assert abs(seen.count(500) - n / 4) < tolerance(n, 0.25)
    assert abs(seen.count(503) - n / 4) < tolerance(n, 0.25)
    sim.set_faults(FaultConfig())
    assert await statuses(raw, region, 20) == [200] * 20


@pytest.mark.asyncio
async def test_the_sdk_sees_server_errors(sim: Simulator) -> None:
    region = sim.regions[0]
    client = sdk_client(sim, region)
    sim.set_faults(unavailable_rate=1.0)
    with pytest.raises(ServerException) as info:
        await client.describe_regions_async()
    assert (info.value.code, info.value.status_code) == ("ServiceUnavailable", 503)
    sim.set_faults(unavailable_rate=0.0, internal_error_rate=1.0)
    with pytest.raises(ServerException) as info:
        await anyio.to_thread.run_sync(client.describe_regions)
    assert (info.value.code, info.value.status_code) == ("InternalError", 500)


@pytest.mark.asyncio
async def test_same_seed_same_faults_over_http(session: aiohttp.ClientSession) -> None:
    async def run(seed: int) -> list[int]:
        config = FaultConfig(internal_error_rate=0.2, unavailable_rate=0.2, truncate_rate=0.1)
        async with Simulator(preset="small", seed=seed, faults=config) as sim:
            return await statuses(RawClient(session, sim), sim.regions[0], 60)

    first = await run(11)
    assert first == await run(11)
    assert first != await run(12)


@pytest.mark.asyncio
async def test_reset_connections(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    sim.set_faults(reset_rate=0.3)
    n = 120
    resets = 0
    for _ in range(n):
        try:
            reply = await raw.services(region, {"PageSize": "20"})
        except aiohttp.ClientError:
            resets += 1
        else:
            assert reply.status == 200
            assert reply.json()["Services"]
    assert resets == sim.counters().faults[FaultKind.RESET]
    assert abs(resets - 0.3 * n) < tolerance(n, 0.3)


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[bytes, OSError | None]:
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except OSError as exc:
        return received, exc
    return received, None


@pytest.mark.asyncio
async def test_a_reset_sends_headers_and_part_of_the_body(sim: Simulator) -> None:
    region = sim.regions[0]
    sim.set_faults(reset_rate=1.0)
    host, port = sim.endpoints[region].removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as session:
        url, headers = RawClient(session, sim).signed(region, "ListServices", "/api/v2/services", {})
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"GET {url.raw_path_qs} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    )
    writer.write(request.encode())
    received, error = await read_until_closed(reader)
    writer.close()
    assert isinstance(error, ConnectionResetError)  # a reset (RST), not an orderly close (FIN)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    assert 0 < len(body) < length


@pytest.mark.asyncio
async def test_the_sdk_sees_a_reset(sim: Simulator) -> None:
    region = sim.regions[0]
    sim.set_faults(reset_rate=1.0)
    client = sdk_client(sim, region)
    with pytest.raises(UnretryableException) as info:
        await anyio.to_thread.run_sync(client.describe_regions)
    assert "Connection reset by peer" in str(info.value.inner_exception)


@pytest.mark.asyncio
async def test_truncated_and_not_json_bodies(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    sim.set_faults(truncate_rate=0.2, not_json_rate=0.2)
    n = 200
    truncated = not_json = 0
    for _ in range(n):
        reply = await raw.services(region, {"PageSize": "5"})
        assert reply.status == 200
        if reply.body.startswith(b"<html>"):
            not_json += 1
            assert reply.headers["Content-Type"].startswith("text/html")
            continue
        try:
            reply.json()
        except ValueError:
            truncated += 1
            assert reply.body.startswith(b'{"RequestId":"')
            assert int(reply.headers["Content-Length"]) == len(reply.body)
    faults = sim.counters().faults
    assert (truncated, not_json) == (faults[FaultKind.TRUNCATED], faults[FaultKind.NOT_JSON])
    assert abs(truncated - 0.2 * n) < tolerance(n, 0.2)
    assert abs(not_json - 0.2 * n) < tolerance(n, 0.2)


@pytest.mark.asyncio
async def test_latency_is_added(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    started = time.perf_counter()
    await raw.regions(region)
    quick = time.perf_counter() - started
    sim.set_faults(latency_ms=150)
    started = time.perf_counter()
    assert (await raw.regions(region)).status == 200
    assert time.perf_counter() - started >= 0.15 > quick


@pytest.mark.asyncio
async def test_latency_and_jitter_over_http_only_when_configured(
    session: aiohttp.ClientSession,
) -> None:
    # The simulator sleeps on its clock: a FakeClock records every delay it served, exactly.
    clock = FakeClock()
    async with Simulator(preset="small", seed=1, clock=clock) as sim:
        raw = RawClient(session, sim)
        region = sim.regions[0]
        assert await statuses(raw, region, 20) == [200] * 20
        assert clock.sleeps == []  # nothing configured: no delay at all
        sim.set_faults(latency_ms=10, jitter_ms=20)
        n = 300
        assert await statuses(raw, region, n) == [200] * n
        assert len(clock.sleeps) == n
        assert all(0.010 <= delay < 0.030 for delay in clock.sleeps)
        assert abs(sum(clock.sleeps) / n - 0.020) < 0.0015  # uniform jitter: mean latency + jitter/2
        assert len(set(clock.sleeps)) == n  # jittered, not one fixed value
        sim.set_faults(FaultConfig(latency_ms=7))  # fixed latency alone: no jitter
        del clock.sleeps[:]
        assert await statuses(raw, region, 10) == [200] * 10
        assert clock.sleeps == [0.007] * 10
        sim.set_faults(FaultConfig())
        del clock.sleeps[:]
        await statuses(raw, region, 10)
        assert clock.sleeps == []
        assert sim.counters().faults.get(FaultKind.SLOW, 0) == 0  # latency is not a fault


@pytest.mark.asyncio
async def test_no_rate_limit_means_no_throttling(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()  # frozen time: any limit at all would run out of tokens
    async with Simulator(preset="small", seed=1, clock=clock) as sim:
        raw = RawClient(session, sim)
        assert await statuses(raw, sim.regions[0], 50) == [200] * 50
        assert sim.counters().throttled_total == 0


@pytest.mark.asyncio
async def test_slow_responses_exceed_a_client_timeout(sim: Simulator, raw: RawClient) -> None:
    region = sim.regions[0]
    # Wide margins both ways (0.3 s budget, 0.9 s slow), so a busy machine cannot flip an answer.
    sim.set_faults(slow_rate=0.5, slow_ms=900)
    n = 16
    timeouts = 0
    timeout = aiohttp.ClientTimeout(total=0.3)
    for _ in range(n):
        url, headers = raw.signed(region, "DescribeRegions", "/api/v2/regions", {})
        try:
            async with raw.session.get(url, headers=headers, timeout=timeout) as response:
                assert response.status == 200
        except TimeoutError:
            timeouts += 1
    assert timeouts == sim.counters().faults[FaultKind.SLOW]
    assert abs(timeouts - 0.5 * n) < tolerance(n, 0.5)


# --- rate limit and permissions ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limit_token_bucket_with_a_fake_clock(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(
        preset="small", seed=1, clock=clock, faults=FaultConfig(rate_limit=5, burst=3)
    ) as sim:
        raw = RawClient(session, sim)
        first, second = sim.regions
        assert await statuses(raw, first, 4) == [200, 200, 200, 429]
        reply = await raw.services(first)
        assert reply.json()["Code"] == "Throttling"
        assert "x-acs-retry-after" not in {k.lower() for k in reply.headers}
        # Other actions and other regions have their own buckets.
        assert (await raw.regions(first)).status == 200
        assert await statuses(raw, second, 3) == [200, 200, 200]
        clock.advance(0.2)  # one token at 5/s
        assert await statuses(raw, first, 2) == [200, 429]
        clock.advance(10)  # refills to the burst, no more
        assert await statuses(raw, first, 4) == [200, 200, 200, 429]
        counters = sim.counters()
        assert counters.throttled[first]["ListServices"] == 4 == counters.throttled_total
        assert counters.faults[FaultKind.THROTTLED] == 4


@pytest.mark.asyncio
async def test_throttle_status_and_retry_after(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    config = FaultConfig(rate_limit=4, burst=1, throttle_status=400, retry_after_ms=1500)
    async with Simulator(preset="small", seed=1, clock=clock, faults=config) as sim:
        raw = RawClient(session, sim)
        region = sim.regions[0]
        assert (await raw.regions(region)).status == 200
        reply = await raw.regions(region)
        assert (reply.status, reply.json()["Code"]) == (400, "Throttling.User")
        assert reply.headers["x-acs-retry-after"] == "1500"
        sim.set_faults(retry_after_ms="auto", throttle_status=429)  # same limit: the buckets carry on
        reply = await raw.regions(region)
        assert (reply.status, reply.headers["x-acs-retry-after"]) == (429, "250")
        clock.advance(0.1)
        assert (await raw.regions(region)).headers["x-acs-retry-after"] == "150"
        # The SDK turns x-acs-retry-after into a ThrottlingException.
        with pytest.raises(ThrottlingException) as info:
            await sdk_client(sim, region).describe_regions_async()
        assert info.value.retry_after == 150


@pytest.mark.asyncio
async def test_forbidden_in_one_region_only(sim: Simulator) -> None:
    first, second = sim.regions
    sim.forbid_region(first)
    with pytest.raises(ClientException) as info:
        await sdk_client(sim, first).list_services_async(eas_models.ListServicesRequest())
    assert (info.value.code, info.value.status_code) == ("Forbidden.RAM", 403)
    assert (await sdk_client(sim, second).list_services_async(eas_models.ListServicesRequest())).body.services
    sim.forbid_region(first, False)
    assert (await sdk_client(sim, first).list_services_async(eas_models.ListServicesRequest())).body.services
    assert sim.counters().faults[FaultKind.FORBIDDEN] == 1
    with pytest.raises(ConfigError):
        sim.forbid_region("xx-nowhere-1")


@pytest.mark.asyncio
async def test_faults_can_be_scoped_at_runtime(sim: Simulator, raw: RawClient) -> None:
    first, second = sim.regions
    sim.set_faults(internal_error_rate=1.0, regions=frozenset({second}), actions=frozenset({"ListServices"}))
    assert (await raw.services(first)).status == 200
    assert (await raw.regions(second)).status == 200
    assert (await raw.services(second)).status == 500
    with pytest.raises(ConfigError):
        sim.set_faults(no_such_knob=1)
