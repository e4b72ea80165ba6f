"""The scan engine against an in-memory EAS: completeness, bounds, failures, cancellation."""

from __future__ import annotations

import dataclasses
import random
import weakref
from typing import Any

import anyio
import pytest

from scanner.eas.models import Page
from scanner.engine.config import Concurrency, RetryPolicy
from scanner.engine.pacing import ClientRateLimiter
from scanner.errors import (
    AuthError,
    CredentialsError,
    NotFoundError,
    ScanFailedError,
    ServerError,
    ThrottledError,
    UsageError,
)
from scanner.scanner import Scanner
from scanner.testing import FakeClock
from tests.fakes import Call, FakeEas

pytestmark = pytest.mark.asyncio

FLEET = {
    "cn-shanghai": {"alpha": 3, "beta": 250, "gamma": 0, "delta": 1001},
    "cn-beijing": {f"svc{i:02d}": i * 7 for i in range(30)},
}


def scanner_for(api: FakeEas, **kwargs: Any) -> Scanner:
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("rng", random.Random(0))
    return Scanner(api=api, **kwargs)


def keys(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["ClusterId"], r["ServiceName"], r["InstanceName"]) for r in records]


async def collect(scanner: Scanner, **scan_args: Any) -> tuple[list[dict[str, Any]], Any]:
    stream = scanner.scan(**scan_args)
    records = [record async for record in stream]
    return records, stream.summary


async def test_every_instance_once_with_its_tags() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        records, summary = await collect(scanner, regions="all")
    assert sorted(keys(records)) == sorted(api.expected())
    assert len(records) == len(set(keys(records)))
    delta = next(r for r in records if r["ServiceName"] == "delta")
    assert delta["Service"] == {
        "ServiceId": "eas-m-delta", "ServiceUid": "uid-delta", "Status": "Running",
        "ServiceGroup": "group", "Resource": "eas-r-1", "ResourceAlias": "alias",
        "WorkspaceId": "1234", "Labels": [{"LabelKey": "env", "LabelValue": "test"}],
        "CreateTime": delta["Service"]["CreateTime"],
    }  # fmt: skip
    assert delta["StartTime"].endswith("Z")
    assert summary.complete
    assert summary.records == len(records)
    assert summary.regions["cn-shanghai"].instances == 3 + 250 + 1001
    assert summary.regions["cn-shanghai"].services == 4
    assert summary.verdicts["complete"] == 34
    assert summary.failures == ()


async def test_instances_are_listed_oldest_first_and_services_in_creation_order() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        await collect(scanner, regions=["cn-shanghai"])
    pages = [c for c in api.calls if c.action == "ListServiceInstances" and c.page_size == 100]
    assert pages
    assert all(c.query.sort == "StartTime" and c.query.order == "asc" for c in pages)
    # A multi-page listing is read last page first (the look at its end before the others), and
    # closed by a one-record look at the instance at the same position, in the same order.
    listings: dict[str | None, list[tuple[int, int]]] = {}
    for c in api.calls:
        if c.action == "ListServiceInstances":
            assert c.query.sort == "StartTime"
            assert c.query.order == "asc"
            listings.setdefault(c.service, []).append((c.page_number, c.page_size))
    assert listings["beta"][0] == (3, 100)
    assert listings["beta"][-1] == (250, 1)
    assert sorted(listings["beta"][1:-1]) == [(1, 100), (2, 100)]
    assert listings["delta"][0] == (11, 100)
    assert listings["delta"][-1] == (1001, 1)
    assert sorted(listings["delta"][1:-1]) == [(n, 100) for n in range(1, 11)]
    assert listings["alpha"] == [(1, 100)]
    assert listings["gamma"] == [(1, 100)]
    service_calls = [c for c in api.calls if c.action == "ListServices"]
    assert all(c.query.sort == "CreateTime" and c.query.order == "asc" for c in service_calls)


async def test_a_server_that_pages_smaller_than_asked_is_read_whole() -> None:
    # The API answers PageSize=100 with pages of 40 (and says so): discovery, the first pass and
    # a re-read all follow the server's paging, and every instance is read once.
    fleet = {f"svc{i:03d}": 3 for i in range(95)} | {"beta": 250, "delta": 1001}
    api = FakeEas({"cn-shanghai": fleet}, page_cap=40)
    at_start = api.expected()
    service = api.regions["cn-shanghai"]["delta"]
    deleted: set[tuple[str, str, str]] = set()

    def swap(call: Call) -> None:  # a deletion hidden by a creation: delta is read again
        if call.service == "delta" and call.page_size == 100 and call.page_number == 5 and not deleted:
            deleted.add(("cn-shanghai", "delta", service.instances.pop(3)["InstanceName"]))
            api.add_instance("cn-shanghai", "delta")

    api.hooks.append(swap)
    async with scanner_for(api, concurrency=Concurrency(pages_per_listing=1)) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    got = keys(records)
    assert len(got) == len(set(got))
    assert deleted
    assert at_start - deleted <= set(got) <= at_start | api.expected()
    assert summary.verdicts["reread"] == 1
    assert summary.verdicts["complete"] == 96
    assert summary.complete


@pytest.mark.parametrize(
    ("counted", "now"),
    [(250, 420), (250, 150), (250, 200), (250, 0), (60, 160), (60, 0)],
)
async def test_a_listing_that_changed_size_since_listservices_is_read_whole(counted: int, now: int) -> None:
    # ListServices said ``counted``; by the first instance page there are ``now``. The first
    # answer may then not show the listing's end: the scan must open its watched window with a
    # look of its own, and still read every page, once, as one unchanged listing.
    api = FakeEas({"cn-shanghai": {"svc": counted}})
    service = api.regions["cn-shanghai"]["svc"]
    resized = False

    def resize(call: Call) -> None:
        nonlocal resized
        if call.action == "ListServiceInstances" and not resized:
            resized = True
            del service.instances[now:]
            while len(service.instances) < now:
                api.add_instance("cn-shanghai", "svc")

    api.hooks.append(resize)
    async with scanner_for(api, concurrency=Concurrency(pages_per_listing=2)) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    assert sorted(keys(records)) == sorted(api.expected())
    assert len(records) == now
    assert summary.verdicts["complete"] == 1
    assert summary.complete
    calls = [(c.page_number, c.page_size) for c in api.calls if c.action == "ListServiceInstances"]
    pages = max(1, -(-now // 100))
    data = sorted(number for number, size in calls[1:] if size == 100)
    looks = [call for call in calls[1:] if call[1] == 1]
    if counted > 100 and (now == 0 or -(-now // 100) == -(-counted // 100)):
        # The last page still ends the listing (or the listing is empty): no look of its own.
        assert looks == [(max(now, 1), 1)]
        assert data == [n for n in range(1, pages + 1) if n != calls[0][0]]
    elif pages > 1 or counted > 100:
        assert looks == [(max(now, 1), 1), (max(now, 1), 1)]
        assert data == list(range(1, pages + 1))
    else:
        assert looks == []
        assert data == []


async def test_a_callers_order_is_kept() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        records, _ = await collect(scanner, regions=["cn-shanghai"], order="desc")
    assert sorted(keys(records)) == sorted(k for k in api.expected() if k[0] == "cn-shanghai")
    assert {c.query.order for c in api.calls if c.action == "ListServiceInstances"} == {"desc"}


async def test_endpoint_overrides_choose_the_regions() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api, endpoints={"cn-beijing": "http://127.0.0.1:1"}) as scanner:
        records, summary = await collect(scanner)
    assert {r["ClusterId"] for r in records} == {"cn-beijing"}
    assert list(summary.regions) == ["cn-beijing"]
    assert not any(c.action == "DescribeRegions" for c in api.calls)


async def test_concurrency_bounds_are_never_exceeded() -> None:
    api = FakeEas(FLEET)
    api.delay = 0.001
    concurrency = Concurrency(total=5, per_region=3, pages_per_listing=2, services_per_region=4)
    async with scanner_for(api, concurrency=concurrency) as scanner:
        records, summary = await collect(scanner, regions="all")
    assert summary.complete
    assert len(records) == len(api.expected())
    assert api.peak_in_flight == 5
    assert max(api.region_peak.values()) == 3
    assert max(api.listing_peak.values()) == 2


async def test_few_long_listings_are_open_at_once_per_region() -> None:
    # Twelve services of several pages each: each holds its emitted names until it ends, so only
    # ``long_listings_per_region`` of them may be open at once, while one-page services go on.
    fleet = {"cn-shanghai": {**{f"big{i:02d}": 450 for i in range(12)}, **{f"one{i}": 5 for i in range(6)}}}
    api = FakeEas(fleet)
    api.delay = 0.001
    concurrency = Concurrency(services_per_region=10, long_listings_per_region=3, pages_per_listing=2)
    async with scanner_for(api, concurrency=concurrency) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    assert summary.complete
    assert len(records) == len(api.expected())
    spans: dict[str, list[int]] = {}
    for index, call in enumerate(api.calls):
        if call.action == "ListServiceInstances" and call.service is not None:
            spans.setdefault(call.service, [index, index])[1] = index
    longs = [span for name, span in spans.items() if name.startswith("big")]
    peak = max(sum(first <= i <= last for first, last in longs) for i in range(len(api.calls)))
    assert peak == 3


async def test_few_long_listings_are_open_at_once_across_regions() -> None:
    # The per-region bound alone lets memory grow with the number of regions.
    fleet = {region: {f"big{i:02d}": 450 for i in range(6)} for region in ("cn-shanghai", "cn-beijing")}
    api = FakeEas(fleet)
    api.delay = 0.001
    concurrency = Concurrency(long_listings_per_region=3, long_listings=4, pages_per_listing=2)
    async with scanner_for(api, concurrency=concurrency) as scanner:
        records, summary = await collect(scanner, regions="all")
    assert summary.complete
    assert len(records) == len(api.expected())
    spans: dict[tuple[str, str], list[int]] = {}
    for index, call in enumerate(api.calls):
        if call.action == "ListServiceInstances" and call.service is not None:
            spans.setdefault((call.region, call.service), [index, index])[1] = index
    open_at = [
        [key for key, (first, last) in spans.items() if first <= i <= last] for i in range(len(api.calls))
    ]
    assert max(len(keys) for keys in open_at) == 4
    assert max(sum(region == "cn-shanghai" for region, _ in keys) for keys in open_at) <= 3


class _TrackedItems(list[dict[str, Any]]):
    """A page's item list that can be watched with a weak reference."""


async def test_a_page_is_released_once_emitted_however_many_listings_are_open() -> None:
    # Thirty long listings open at once, few requests in flight: a listing that kept any page it
    # had emitted (its page 1 while the rest is read, a worker's last page while its next request
    # waits) would make memory grow with open listings instead of with pages in flight.
    api = FakeEas({"cn-shanghai": {f"big{i:02d}": 450 for i in range(30)}})
    pages: list[weakref.ref[_TrackedItems]] = []
    make_page = api._page

    def tracked_page(items: list[dict[str, Any]], number: int, size: int) -> Page:
        page = make_page(items, number, size)
        tracked = _TrackedItems(page.items)
        pages.append(weakref.ref(tracked))
        return dataclasses.replace(page, items=tracked)

    peak = 0

    def count_live(call: Call) -> None:
        nonlocal peak
        peak = max(peak, sum(ref() is not None for ref in pages))

    api._page = tracked_page  # type: ignore[method-assign]
    api.hooks.append(count_live)
    api.delay = 0.001
    concurrency = Concurrency(
        total=4, per_region=4, pages_per_listing=1, services_per_region=30, long_listings_per_region=30
    )
    async with scanner_for(api, concurrency=concurrency, buffer_pages=1) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    assert summary.complete
    assert len(records) == 30 * 450
    assert len(pages) > 30 * 5
    # In flight (total), buffered for the consumer (buffer_pages), and the one being read.
    assert 0 < peak <= 4 + 1 + 1


async def test_pages_after_the_first_are_fetched_concurrently() -> None:
    api = FakeEas({"cn-shanghai": {"big": 2000}})
    api.delay = 0.002
    async with scanner_for(api, concurrency=Concurrency(pages_per_listing=8)) as scanner:
        await collect(scanner, regions=["cn-shanghai"])
    assert api.listing_peak["cn-shanghai/big"] == 8


async def test_explicit_services_and_missing_ones() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        records, summary = await collect(scanner, regions="all", services=["alpha", "svc03", "nope"])
    assert {r["ServiceName"] for r in records} == {"alpha", "svc03"}
    assert len(records) == 3 + 21
    assert summary.missing_services == ("nope",)


async def test_instance_filters_reach_the_api() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        await collect(scanner, regions=["cn-shanghai"], instance_status="Running", is_spot=True)
    queries = {c.query for c in api.calls if c.action == "ListServiceInstances"}
    assert all(q.instance_status == "Running" and q.is_spot is True for q in queries)


async def test_transient_errors_are_retried_per_page_and_counted() -> None:
    api = FakeEas(FLEET)
    rng = random.Random(1)

    def flaky(call: Call) -> None:
        if call.action != "DescribeRegions" and rng.random() < 0.2:
            error = rng.choice([ServerError, ThrottledError])
            raise error("injected", region=call.region, action=call.action, status=503, code="X")

    api.hooks.append(flaky)
    clock = FakeClock()
    async with scanner_for(api, clock=clock) as scanner:
        records, summary = await collect(scanner, regions="all")
    assert sorted(keys(records)) == sorted(api.expected())
    assert summary.complete
    assert summary.retries > 10
    assert summary.throttled > 0
    assert summary.requests == len(api.calls)  # DescribeRegions included
    assert clock.sleeps  # backoff went through the injected clock


async def test_every_answer_reaches_the_rate_limiter_failures_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slow start counts answers: a failure the limiter never heard of would hold its round open.
    outcomes: list[str] = []
    for name in ("on_success", "on_throttle", "on_error"):
        original = getattr(ClientRateLimiter, name)

        def spy(self: ClientRateLimiter, *args: Any, _name: str = name, _original: Any = original) -> None:
            outcomes.append(_name)
            _original(self, *args)

        monkeypatch.setattr(ClientRateLimiter, name, spy)
    api = FakeEas(FLEET)
    failures = iter([ServerError, ThrottledError, ServerError, NotFoundError])  # the last ends it

    def fail_some(call: Call) -> None:
        if call.action == "ListServiceInstances" and call.service == "beta":
            error = next(failures, None)
            if error is not None:
                raise error("injected", region=call.region, action=call.action, status=503, code="X")

    api.hooks.append(fail_some)
    async with scanner_for(api) as scanner:
        _, summary = await collect(scanner, regions=["cn-shanghai"])
    assert len(outcomes) == summary.requests == len(api.calls)
    assert outcomes.count("on_throttle") == summary.throttled == 1
    assert outcomes.count("on_error") == 3


async def test_a_forbidden_region_is_a_partial_failure() -> None:
    api = FakeEas(FLEET)

    def forbid(call: Call) -> None:
        if call.region == "cn-beijing" and call.action != "DescribeRegions":
            raise AuthError(
                "denied", region=call.region, action=call.action, status=403, code="Forbidden.RAM"
            )

    api.hooks.append(forbid)
    async with scanner_for(api) as scanner:
        records, summary = await collect(scanner, regions="all")
    assert {r["ClusterId"] for r in records} == {"cn-shanghai"}
    assert not summary.complete
    assert summary.regions["cn-shanghai"].complete
    assert not summary.regions["cn-beijing"].complete
    assert summary.regions["cn-beijing"].error is not None
    assert "Forbidden.RAM" in summary.regions["cn-beijing"].error
    assert [(f.region, f.service, f.code) for f in summary.failures] == [
        ("cn-beijing", None, "Forbidden.RAM")
    ]
    # Auth errors are never retried.
    assert sum(1 for c in api.calls if c.region == "cn-beijing" and c.action == "ListServices") == 1


async def test_every_region_refused_is_fatal() -> None:
    api = FakeEas(FLEET)

    def forbid(call: Call) -> None:
        if call.action == "ListServices":
            raise AuthError(
                "denied", region=call.region, action=call.action, status=403, code="Forbidden.RAM"
            )

    api.hooks.append(forbid)
    async with scanner_for(api) as scanner:
        stream = scanner.scan(regions="all")
        with pytest.raises(ScanFailedError, match="every region failed"):
            [r async for r in stream]
        assert not stream.summary.complete


async def test_missing_credentials_are_fatal() -> None:
    api = FakeEas(FLEET)

    def no_credentials(call: Call) -> None:
        raise CredentialsError("no credentials found")

    api.hooks.append(no_credentials)
    async with scanner_for(api) as scanner:
        stream = scanner.scan(regions=["cn-shanghai", "cn-beijing"])
        with pytest.raises(CredentialsError):
            [r async for r in stream]


async def test_a_failed_service_does_not_stop_the_others() -> None:
    api = FakeEas(FLEET)

    def break_beta(call: Call) -> None:
        if call.service == "beta" and call.page_number == 2:
            raise ServerError("boom", region=call.region, action=call.action, service="beta", status=500,
                              code="InternalError")  # fmt: skip

    api.hooks.append(break_beta)
    policy = RetryPolicy(max_attempts=3)
    async with scanner_for(api, retry=policy) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    assert not summary.complete
    assert [(f.region, f.service, f.code) for f in summary.failures] == [
        ("cn-shanghai", "beta", "InternalError")
    ]
    assert {r["ServiceName"] for r in records} == {"alpha", "beta", "delta"}  # gamma has none
    assert sum(1 for r in records if r["ServiceName"] == "delta") == 1001
    assert sum(1 for c in api.calls if c.service == "beta" and c.page_number == 2) == 3
    assert summary.verdicts["failed"] == 1


async def test_fail_fast_raises_the_first_failure() -> None:
    api = FakeEas(FLEET)

    def break_beta(call: Call) -> None:
        if call.service == "beta":
            raise AuthError("no", region=call.region, action=call.action, service="beta", status=403,
                            code="Forbidden.RAM")  # fmt: skip

    api.hooks.append(break_beta)
    async with scanner_for(api, fail_fast=True) as scanner:
        stream = scanner.scan(regions=["cn-shanghai"])
        with pytest.raises(AuthError):
            [r async for r in stream]
        assert not stream.summary.complete


async def test_a_service_deleted_mid_scan_is_recorded_not_failed() -> None:
    api = FakeEas(FLEET)

    def delete_delta(call: Call) -> None:
        if call.service == "delta" and call.page_number == 5:
            api.regions["cn-shanghai"].pop("delta", None)

    api.hooks.append(delete_delta)
    async with scanner_for(api) as scanner:
        _records, summary = await collect(scanner, regions=["cn-shanghai"])
    assert summary.complete
    assert summary.verdicts["deleted"] == 1
    assert ("cn-shanghai", "delta", "deleted") in summary.notable_services
    assert summary.failures == ()


async def test_churn_during_paging_misses_no_survivor_and_repeats_none() -> None:
    api = FakeEas({"cn-shanghai": {"big": 950}})
    survivors = set(api.expected())
    deleted: set[tuple[str, str, str]] = set()
    rng = random.Random(7)

    def churn(call: Call) -> None:
        if call.action != "ListServiceInstances":
            return
        service = api.regions["cn-shanghai"]["big"]
        if rng.random() < 0.5 and service.instances:
            victim = service.instances.pop(rng.randrange(len(service.instances)))
            deleted.add(("cn-shanghai", "big", victim["InstanceName"]))
        if rng.random() < 0.3:
            api.add_instance("cn-shanghai", "big")

    api.hooks.append(churn)
    async with scanner_for(api) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    got = keys(records)
    assert len(got) == len(set(got)), "an instance was emitted twice"
    assert survivors - deleted <= set(got), "an instance that existed throughout was missed"
    assert summary.verdicts["reread"] + summary.verdicts["unstable"] == 1
    if summary.verdicts["unstable"]:
        # Still changing after every pass: its survivors are out, but the scan is not complete.
        assert not summary.complete
        assert [(f.service, f.code) for f in summary.failures] == [("big", "ListingUnstable")]
    else:
        assert summary.complete


async def test_a_deletion_hidden_by_a_creation_is_caught_and_reread() -> None:
    # The case TotalCount alone cannot see: between two page reads one early instance is deleted
    # (shifting the first instance of page 2 onto page 1, already read) and one is created.
    api = FakeEas({"cn-shanghai": {"big": 300}})
    service = api.regions["cn-shanghai"]["big"]
    shifted = sorted(service.instances, key=lambda i: i["_order"])[100]["InstanceName"]
    done = False

    def swap(call: Call) -> None:
        nonlocal done
        if call.page_number == 2 and call.page_size == 100 and not done:
            done = True
            service.instances.pop(3)
            api.add_instance("cn-shanghai", "big")

    api.hooks.append(swap)
    async with scanner_for(api, concurrency=Concurrency(pages_per_listing=1)) as scanner:
        records, summary = await collect(scanner, regions=["cn-shanghai"])
    names = [r["InstanceName"] for r in records]
    assert shifted in names
    assert len(names) == len(set(names))
    assert summary.verdicts["reread"] == 1


async def test_a_deleted_service_shifting_the_services_listing_misses_no_other_service() -> None:
    api = FakeEas({"cn-shanghai": {f"s{i:03d}": 1 for i in range(250)}})
    removed = False

    def delete_early_service(call: Call) -> None:
        nonlocal removed
        if call.action == "ListServices" and call.page_number == 2 and not removed:
            removed = True
            api.regions["cn-shanghai"].pop("s005")

    api.hooks.append(delete_early_service)
    async with scanner_for(api) as scanner:
        records, _ = await collect(scanner, regions=["cn-shanghai"])
    names = {r["ServiceName"] for r in records}
    assert names >= {f"s{i:03d}" for i in range(250)} - {"s005"}


async def test_breaking_out_early_then_leaving_stops_everything() -> None:
    api = FakeEas(FLEET)
    api.delay = 0.001
    with anyio.fail_after(5):
        async with scanner_for(api) as scanner:
            stream = scanner.scan(regions="all")
            async for _ in stream:
                break
        assert api.in_flight == 0
    assert stream.summary.cancelled
    assert not stream.summary.complete


async def test_closing_the_stream_stops_the_producers_at_once() -> None:
    api = FakeEas(FLEET)
    api.delay = 0.001
    async with scanner_for(api) as scanner:
        async with scanner.scan(regions="all") as stream:
            first = await stream.__anext__()
            assert first["ClusterId"]
        calls_at_close = len(api.calls)
        await anyio.sleep(0.05)
        assert len(api.calls) == calls_at_close
        assert api.in_flight == 0
        assert stream.summary.cancelled


async def test_cancelling_the_caller_stops_within_a_second() -> None:
    api = FakeEas(FLEET)
    api.delay = 0.01
    with anyio.move_on_after(0.05):
        async with scanner_for(api) as scanner:
            async for _ in scanner.scan(regions="all"):
                await anyio.sleep(0.001)
    assert api.in_flight == 0


async def test_a_slow_consumer_slows_the_scan_instead_of_buffering() -> None:
    api = FakeEas({"cn-shanghai": {f"s{i}": 100 for i in range(40)}})
    async with scanner_for(api, buffer_pages=2) as scanner:
        stream = scanner.scan(regions=["cn-shanghai"])
        first = await stream.__anext__()
        assert first
        await anyio.sleep(0.05)  # the producers run ahead only as far as the buffer lets them
        pages_fetched = sum(1 for c in api.calls if c.action == "ListServiceInstances")
        stats = stream.statistics()
        # buffer (2) + the page being read + one blocked send per service worker, at most
        assert pages_fetched <= 2 + 1 + 32 + 1
        assert stats.records <= (2 + 1) * 100
        rest = [r async for r in stream]
    assert len(rest) + 1 == 4000


async def test_summary_before_the_end_is_a_usage_error() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        stream = scanner.scan(regions=["cn-shanghai"])
        with pytest.raises(UsageError, match="still running"):
            _ = stream.summary
        await stream.aclose()


async def test_scanner_lifecycle_misuse() -> None:
    scanner = scanner_for(FakeEas(FLEET))
    with pytest.raises(UsageError, match="open Scanner"):
        scanner.scan()
    async with scanner:
        with pytest.raises(UsageError, match="more than once"):
            await scanner.__aenter__()
    with pytest.raises(UsageError, match="reopen"):
        await scanner.__aenter__()


async def test_write_to_a_sink_gives_json_lines() -> None:
    import io

    import orjson

    api = FakeEas(FLEET)
    sink = io.BytesIO()
    async with scanner_for(api) as scanner:
        summary = await scanner.scan(regions=["cn-shanghai"]).write_to(sink)
    lines = sink.getvalue().splitlines()
    assert len(lines) == summary.records == 1254
    decoded = [orjson.loads(line) for line in lines]
    assert {(d["ClusterId"], d["ServiceName"], d["InstanceName"]) for d in decoded} == {
        k for k in api.expected() if k[0] == "cn-shanghai"
    }


async def test_statistics_track_known_and_done() -> None:
    api = FakeEas(FLEET)
    async with scanner_for(api) as scanner:
        stream = scanner.scan(regions="all")
        [r async for r in stream]
        stats = stream.statistics()
    assert stats.regions["cn-shanghai"].instances_known == stats.regions["cn-shanghai"].instances_done == 1254
    assert stats.regions["cn-beijing"].services_known == 30
    assert stats.services_done == 34
    assert stats.requests == len(api.calls)


async def test_not_found_is_never_retried() -> None:
    api = FakeEas(FLEET)

    def gone(call: Call) -> None:
        if call.service == "alpha":
            raise NotFoundError("gone", region=call.region, action=call.action, service="alpha", status=404,
                                code="InvalidService.NotFound")  # fmt: skip

    api.hooks.append(gone)
    async with scanner_for(api) as scanner:
        _, summary = await collect(scanner, regions=["cn-shanghai"])
    assert sum(1 for c in api.calls if c.service == "alpha") == 1
    assert summary.verdicts["deleted"] == 1
