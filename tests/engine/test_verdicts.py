"""Issue 11: a verdict proven, not assumed. Each service verdict, the ListServices proof, what
"deleted" needs, and the plausibility bounds on what a server says (bounded work, honest verdict).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from scanner.eas.models import Page
from scanner.engine.config import Concurrency, RetryPolicy
from scanner.engine.stats import ScanSummary
from scanner.errors import NotFoundError, ServerError
from scanner.scanner import Scanner
from scanner.testing import FakeClock
from tests.fakes import Call, FakeEas

pytestmark = pytest.mark.asyncio

REGION = "cn-shanghai"

#: (page as the honest fake made it, the call) -> the page a misbehaving server answers.
Rewrite = Callable[[Page, Call], Page]


class HostileEas(FakeEas):
    """``FakeEas`` whose answers can be rewritten per action, after the honest page is made."""

    def __init__(self, fleet: dict[str, dict[str, int]], **kwargs: Any) -> None:
        super().__init__(fleet, **kwargs)
        self.rewrite_services: Rewrite | None = None
        self.rewrite_instances: dict[str, Rewrite] = {}

    async def list_services(
        self, region: str, query: Any = None, *, page_number: int = 1, page_size: int = 100
    ) -> Page:
        page = await super().list_services(region, query, page_number=page_number, page_size=page_size)
        if self.rewrite_services is not None:
            page = self.rewrite_services(page, self.calls[-1])
        return page

    async def list_service_instances(
        self, region: str, service: str, query: Any = None, *, page_number: int = 1, page_size: int = 100
    ) -> Page:
        page = await super().list_service_instances(
            region, service, query, page_number=page_number, page_size=page_size
        )
        rewrite = self.rewrite_instances.get(service)
        if rewrite is not None:
            page = rewrite(page, self.calls[-1])
        return page


def with_total(total: int) -> Rewrite:
    """A server that says ``total`` whatever the listing holds."""

    def rewrite(page: Page, call: Call) -> Page:
        return Page(page.items, total, page.page_number, page.page_size, page.request_id)

    return rewrite


async def scan(api: FakeEas, **kwargs: Any) -> tuple[list[dict[str, Any]], ScanSummary]:
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("rng", random.Random(0))
    async with Scanner(api=api, **kwargs) as scanner:
        stream = scanner.scan(regions=[REGION])
        records = [record async for record in stream]
    return records, stream.summary


def names(records: list[dict[str, Any]], service: str) -> list[str]:
    return [r["InstanceName"] for r in records if r["ServiceName"] == service]


def failures(summary: ScanSummary) -> list[tuple[str | None, str]]:
    return [(f.service, f.code) for f in summary.failures]


def calls_of(api: FakeEas, service: str) -> list[Call]:
    return [c for c in api.calls if c.action == "ListServiceInstances" and c.service == service]


def services_calls(api: FakeEas) -> list[Call]:
    return [c for c in api.calls if c.action == "ListServices"]


# --- instance listings: complete, reread, unstable ------------------------------------------------


async def test_a_listing_still_changing_after_every_pass_is_unstable_and_the_scan_incomplete() -> None:
    api = HostileEas({REGION: {"hot": 250, "calm": 120}})
    at_start = {i["InstanceName"] for i in api.regions[REGION]["hot"].instances}

    def grow(call: Call) -> None:  # an instance created at every request: never one listing twice
        if call.service == "hot":
            api.add_instance(REGION, "hot")

    api.hooks.append(grow)
    records, summary = await scan(api, max_passes=3)
    got = names(records, "hot")
    assert len(got) == len(set(got))
    assert at_start <= set(got), "its records are still written, every survivor among them"
    assert summary.verdicts["unstable"] == 1
    assert summary.verdicts["complete"] == 1
    assert ("cn-shanghai", "hot", "unstable") in summary.notable_services
    assert failures(summary) == [("hot", "ListingUnstable")]
    assert "3 pass(es)" in summary.failures[0].message
    assert summary.failures[0].action == "ListServiceInstances"
    assert not summary.regions[REGION].complete
    assert not summary.complete  # the CLI's exit 3
    assert len(names(records, "calm")) == 120


async def test_a_listing_that_settles_is_reread_and_complete() -> None:
    api = HostileEas({REGION: {"svc": 250}})
    created = 0

    def grow_once(call: Call) -> None:
        nonlocal created
        if call.service == "svc" and call.page_number == 1 and call.page_size == 100 and not created:
            created += 1
            api.add_instance(REGION, "svc")

    api.hooks.append(grow_once)
    records, summary = await scan(api)
    assert sorted(names(records, "svc")) == sorted(
        i["InstanceName"] for i in api.regions[REGION]["svc"].instances
    )
    assert summary.verdicts["reread"] == 1
    assert summary.failures == ()
    assert summary.complete


# --- "deleted" only when the API says so -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "verdict", "failure"),
    [
        ("InvalidService.NotFound", "deleted", None),
        ("ServiceNotFound", "deleted", None),
        ("InvalidAction.NotFound", "failed", "InvalidAction.NotFound"),
        (None, "failed", "HTTP404"),
    ],
)
async def test_a_404_is_a_deletion_only_with_the_apis_service_code(
    code: str | None, verdict: str, failure: str | None
) -> None:
    api = HostileEas({REGION: {"alpha": 3, "beta": 5}})

    def not_found(call: Call) -> None:
        if call.service == "alpha":
            message = "HTTP 404 with a non-JSON body (text/html)" if code is None else "not found"
            raise NotFoundError(
                message, region=call.region, action=call.action, service="alpha", status=404, code=code
            )

    api.hooks.append(not_found)
    records, summary = await scan(api)
    assert summary.verdicts[verdict] == 1
    assert len(calls_of(api, "alpha")) == 1  # never retried
    assert len(names(records, "beta")) == 5
    if failure is None:
        assert summary.failures == ()
        assert summary.complete
    else:
        assert failures(summary) == [("alpha", failure)]
        assert not summary.complete


# --- plausibility bounds: instance listings -----------------------------------------------------


@pytest.mark.parametrize("total", [10**12, 1_000_001, -5])
async def test_an_implausible_totalcount_ends_the_listing_at_once(total: int) -> None:
    api = HostileEas({REGION: {"liar": 5, "honest": 7}})
    api.rewrite_instances["liar"] = with_total(total)
    records, summary = await scan(api)
    assert failures(summary) == [("liar", "ImplausibleTotalCount")]
    assert summary.verdicts["failed"] == 1
    assert len(calls_of(api, "liar")) == 1
    assert len(names(records, "liar")) == 5  # the page's records are valid all the same
    assert len(names(records, "honest")) == 7
    assert not summary.complete


async def test_an_implausible_totalinstance_in_listservices_costs_nothing() -> None:
    api = HostileEas({REGION: {"svc": 5}})

    def absurd_estimate(page: Page, call: Call) -> Page:
        items = [dict(item, TotalInstance=10**12) for item in page.items]
        return Page(items, page.total_count, page.page_number, page.page_size, page.request_id)

    api.rewrite_services = absurd_estimate
    records, summary = await scan(api)
    assert [(c.page_number, c.page_size) for c in calls_of(api, "svc")] == [(1, 100)]
    assert len(records) == 5
    assert summary.complete


def bound(api: FakeEas, service: str, pages_with_items: int, max_passes: int = 3) -> int:
    """The contract: per pass, requests <= pages that held items + max_passes + a small constant."""
    return max_passes * (pages_with_items + max_passes + 8 + 2)


async def test_a_count_the_pages_never_back_ends_as_implausible_after_bounded_work() -> None:
    # TotalCount 999,999 (plausible), but only 5 instances: page 2 and after are empty.
    api = HostileEas({REGION: {"liar": 5}})
    api.rewrite_instances["liar"] = with_total(999_999)
    records, summary = await scan(api)
    assert failures(summary) == [("liar", "ImplausibleTotalCount")]
    assert "not backed by the pages" in summary.failures[0].message
    assert summary.verdicts["failed"] == 1
    assert len(names(records, "liar")) == 5
    # Pass 1: page 1, its two looks, pages 1 and 2; passes 2 and 3: the last page by the count,
    # then page 2 (one past the last page that held items).
    assert len(calls_of(api, "liar")) <= 9
    assert not summary.complete


async def test_a_huge_count_with_full_pages_ending_early_is_bounded_by_the_pages() -> None:
    # 1,000 real instances (10 full pages), a TotalCount of 1,000,000: 10,000 pages by the count.
    api = HostileEas({REGION: {"liar": 1000}})
    api.rewrite_instances["liar"] = with_total(1_000_000)
    records, summary = await scan(api)
    assert failures(summary) == [("liar", "ImplausibleTotalCount")]
    assert sorted(names(records, "liar")) == sorted(
        i["InstanceName"] for i in api.regions[REGION]["liar"].instances
    )
    assert len(calls_of(api, "liar")) <= bound(api, "liar", 10)


def short_pages(held: int) -> Rewrite:
    """A server that says PageSize 100 and the true TotalCount, but puts only ``held`` on a page."""

    def rewrite(page: Page, call: Call) -> Page:
        return Page(page.items[:held], page.total_count, page.page_number, page.page_size, page.request_id)

    return rewrite


def long_pages(extra: list[dict[str, Any]]) -> Rewrite:
    """A server whose pages hold more records than the page size it answered."""

    def rewrite(page: Page, call: Call) -> Page:
        if call.page_size == 1:
            return page
        return Page(
            page.items + [dict(i) for i in extra], page.total_count, page.page_number, page.page_size, "r"
        )

    return rewrite


def ignoring_page_number(answered: int | None) -> Callable[[FakeEas], Rewrite]:
    """A server that serves page 1 whatever PageNumber says (echoing it, or answering ``answered``)."""

    def make(api: FakeEas) -> Rewrite:
        def rewrite(page: Page, call: Call) -> Page:
            service = api.regions[REGION]["liar"]
            items = [dict(i) for i in sorted(service.instances, key=lambda i: i["_order"])[: page.page_size]]
            number = call.page_number if answered is None else answered
            return Page(items, page.total_count, number, page.page_size, page.request_id)

        return rewrite

    return make


@pytest.mark.parametrize("size", [250, 300])
@pytest.mark.parametrize(
    "server",
    [
        "short pages",
        "long pages",
        "page 1 for every PageNumber, echoed",
        "page 1 for every PageNumber, answered as 1",
    ],
)
async def test_pages_that_do_not_add_up_are_never_complete(server: str, size: int) -> None:
    api = HostileEas({REGION: {"liar": size, "honest": 30}})
    if server == "short pages":
        api.rewrite_instances["liar"] = short_pages(60)
    elif server == "long pages":
        api.rewrite_instances["liar"] = long_pages(api.regions[REGION]["honest"].instances[:20])
    elif server.endswith("echoed"):
        api.rewrite_instances["liar"] = ignoring_page_number(None)(api)
    else:
        api.rewrite_instances["liar"] = ignoring_page_number(1)(api)
    records, summary = await scan(api)
    got = names(records, "liar")
    assert len(got) == len(set(got))
    assert summary.verdicts["unstable"] + summary.verdicts["failed"] == 1
    assert failures(summary) in ([("liar", "ImplausibleTotalCount")], [("liar", "ListingUnstable")])
    assert not summary.complete
    assert len(names(records, "honest")) == 30
    assert len(calls_of(api, "liar")) <= bound(api, "liar", -(-size // 100))


async def test_a_page_short_once_is_read_again_and_the_listing_proven() -> None:
    api = HostileEas({REGION: {"svc": 250}})
    glitched = False

    def glitch_once(page: Page, call: Call) -> Page:
        nonlocal glitched
        if call.page_number == 2 and call.page_size == 100 and not glitched:
            glitched = True
            return Page(page.items[:10], page.total_count, page.page_number, page.page_size, "r")
        return page

    api.rewrite_instances["svc"] = glitch_once
    records, summary = await scan(api)
    assert glitched
    assert len(set(names(records, "svc"))) == len(names(records, "svc")) == 250
    assert summary.verdicts["reread"] == 1
    assert summary.complete


async def test_a_listing_that_shrank_past_its_pages_is_swept_without_walking_empty_pages() -> None:
    # Read again newest page first after heavy deletions: pages past the listing's end, as its
    # own TotalCount says, are skipped, not read one by one.
    api = HostileEas({REGION: {"svc": 2000}})
    service = api.regions[REGION]["svc"]
    cut = False

    def churn(call: Call) -> None:
        nonlocal cut
        if call.service != "svc" or call.page_size != 100:
            return
        if call.page_number == 5 and len(service.instances) == 2000:
            api.add_instance(REGION, "svc")  # pass 1 sees a change: the listing is read again
        if call.page_number == 21 and not cut:  # the re-read's first page: most of it is gone
            cut = True
            del service.instances[300:]

    api.hooks.append(churn)
    records, summary = await scan(api, concurrency=Concurrency(pages_per_listing=1))
    assert cut
    assert {i["InstanceName"] for i in service.instances} <= set(names(records, "svc"))
    assert summary.verdicts["reread"] == 1
    sweep = [c.page_number for c in calls_of(api, "svc") if c.page_size == 100][-4:]
    assert sweep == [21, 3, 2, 1]  # the count said 300 on page 21: straight to page 3
    assert summary.complete


# --- ListServices: the same proof, region-level failures -------------------------------------------


async def test_services_created_during_discovery_are_swept_again_and_complete() -> None:
    api = HostileEas({REGION: {f"s{i:03d}": 1 for i in range(250)}})
    created = False

    def create_once(call: Call) -> None:
        nonlocal created
        if call.action == "ListServices" and call.page_number == 3 and not created:
            created = True
            api.add_service(REGION, "late", 2)

    api.hooks.append(create_once)
    records, summary = await scan(api)
    assert {r["ServiceName"] for r in records} == set(api.regions[REGION])
    assert [c.page_number for c in services_calls(api)] == [1, 3, 2, 1, 3, 2, 1]
    assert summary.failures == ()
    assert summary.complete
    assert summary.verdicts["complete"] == 251


async def test_a_services_listing_still_changing_is_a_region_failure_and_its_services_scanned() -> None:
    api = HostileEas({REGION: {f"s{i:03d}": 1 for i in range(250)}})
    at_start = set(api.regions[REGION])
    serial = 0

    def create_always(call: Call) -> None:
        nonlocal serial
        if call.action == "ListServices":
            serial += 1
            api.add_service(REGION, f"new{serial:03d}", 1)

    api.hooks.append(create_always)
    records, summary = await scan(api, max_passes=2)
    assert at_start <= {r["ServiceName"] for r in records}
    assert failures(summary) == [(None, "ListingUnstable")]
    assert summary.failures[0].action == "ListServices"
    assert not summary.regions[REGION].complete
    assert "ListingUnstable" in (summary.regions[REGION].error or "")
    assert not summary.complete
    assert len(services_calls(api)) <= 1 + 2 * (4 + 1)


@pytest.mark.parametrize("total", [10**12, 1_000_001, -1])
async def test_an_implausible_services_count_fails_the_region_without_allocating_by_it(total: int) -> None:
    api = HostileEas({REGION: {"a": 2, "b": 3}})
    api.rewrite_services = with_total(total)
    records, summary = await scan(api)
    assert failures(summary) == [(None, "ImplausibleTotalCount")]
    assert {r["ServiceName"] for r in records} == {"a", "b"}  # the services it found are scanned
    assert len(services_calls(api)) == 1
    assert not summary.complete
    assert summary.regions[REGION].services == 2


async def test_a_services_count_the_pages_never_back_is_bounded_and_implausible() -> None:
    api = HostileEas({REGION: {f"s{i:03d}": 1 for i in range(150)}})
    api.rewrite_services = with_total(999_999)
    records, summary = await scan(api)
    assert failures(summary) == [(None, "ImplausibleTotalCount")]
    assert len({r["ServiceName"] for r in records}) == 150
    assert len(services_calls(api)) <= 3 * (2 + 3 + 2)
    assert not summary.complete


async def test_services_pages_repeated_whatever_the_pagenumber_are_never_complete() -> None:
    api = HostileEas({REGION: {f"s{i:03d}": 1 for i in range(300)}})

    def page_one(page: Page, call: Call) -> Page:
        first = sorted(api.regions[REGION].values(), key=lambda s: s.created)[:100]
        return Page([s.as_item(REGION) for s in first], page.total_count, page.page_number, 100, "r")

    api.rewrite_services = page_one
    records, summary = await scan(api)
    assert len({r["ServiceName"] for r in records}) == 100
    assert failures(summary) == [(None, "ListingUnstable")]
    assert not summary.complete


async def test_a_failed_services_page_is_one_failure_not_an_unstable_listing() -> None:
    api = HostileEas({REGION: {f"s{i:03d}": 1 for i in range(250)}})

    def break_page_2(call: Call) -> None:
        if call.action == "ListServices" and call.page_number == 2:
            raise ServerError(
                "boom", region=call.region, action=call.action, status=500, code="InternalError"
            )

    api.hooks.append(break_page_2)
    records, summary = await scan(api, retry=RetryPolicy(max_attempts=2))
    assert failures(summary) == [(None, "InternalError")]
    assert not summary.complete
    assert len({r["ServiceName"] for r in records}) >= 150
