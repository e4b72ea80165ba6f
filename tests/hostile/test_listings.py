"""Listings whose pages do not add up, and counts that cannot be true (issue 11).

The contract (/work/team/CONTRACTS.md, "Issue 11 contract"): a listing that cannot be made
consistent is a failure of that service (``ListingUnstable``) or of that region's ListServices,
never part of a complete scan, and what it did read is still written; a TotalCount that is
negative, not an integer, absurd, or not backed by the pages is ``ImplausibleTotalCount``, ended
after bounded work, and no allocation is ever sized by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hostile.harness import (
    BAD,
    EXIT_COMPLETE,
    EXIT_INCOMPLETE,
    GOOD,
    ScanRun,
    assert_failure,
    assert_outcome,
    assert_records,
    assert_region,
    assert_well_behaved,
    scan,
)
from tests.hostile.server import Behaviour, Call, HostileServer, Response

#: Either is an honest name for pages that never add up (the contract allows both).
NOT_ADDING_UP = ("ListingUnstable", "ImplausibleTotalCount")
#: Far more than any bounded treatment of a 3-page listing needs (max_passes 3 x (3 pages + a look
#: + a constant)), far fewer than a scan that trusts the count sends.
REQUEST_BOUND = 60


def assert_verdict_matches(run: ScanRun, failure: dict[str, Any]) -> None:
    """Contract: a ListingUnstable listing is still counted in ``services.unstable``."""
    if failure["code"] == "ListingUnstable":
        verdicts = run.summary["services"]
        assert verdicts.get("unstable", 0) >= 1, (
            f"a ListingUnstable service's verdict is unstable (services.unstable), got {verdicts}"
        )


def test_an_honest_server_is_scanned_exactly(tmp_path: Path) -> None:
    """The baseline every other test departs from: exit 0, every record once and untouched."""
    server, run = scan(tmp_path, None)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["failures"] == []


def _pages_of_svc_b(mode: str) -> Behaviour:
    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-b"):
            return None
        instances = server.service(BAD, "svc-b").instances
        size = call.size
        start = (call.number - 1) * size
        total = len(instances)
        if mode == "more than PageSize":
            # Three more records per page than the PageSize answered, and a TotalCount three short.
            return server.instances_page(call, instances[start : start + size + 3], total=total - 3)
        if mode == "fewer than PageSize":
            # Every page of more than three records loses its last three; TotalCount is the truth.
            page = instances[start : start + size]
            return server.instances_page(call, page[:-3] if len(page) > 3 else page, total=total)
        if mode == "a repeated page":
            # Page 2 answers with page 1's records (a stale cache), saying it is page 2.
            if call.number == 2:
                start = 0
            return server.instances_page(call, instances[start : start + size], total=total)
        if mode == "PageNumber ignored":
            return server.instances_page(call, instances[:size], total=total, PageNumber=1)
        raise AssertionError(mode)

    return behave


@pytest.mark.parametrize(
    "mode", ["more than PageSize", "fewer than PageSize", "a repeated page", "PageNumber ignored"]
)
def test_instance_pages_that_never_add_up_fail_that_service(tmp_path: Path, mode: str) -> None:
    server, run = scan(tmp_path, _pages_of_svc_b(mode))
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-b", codes=NOT_ADDING_UP)
    assert_verdict_matches(run, failure)
    assert_region(run, BAD, complete=False)
    assert_region(run, GOOD, complete=True)
    assert_records(run, server, exact_except=[(BAD, "svc-b")], at_least_served=[(BAD, "svc-b")])
    requests = server.count("ListServiceInstances", region=BAD, service="svc-b")
    assert requests < REQUEST_BOUND, (
        f"a listing that never adds up must end after bounded work (< {REQUEST_BOUND} requests), "
        f"took {requests}"
    )


@pytest.mark.parametrize("missing", [2, 12], ids=["short first page", "empty second page"])
def test_services_beyond_what_list_services_returns_fail_the_region(tmp_path: Path, missing: int) -> None:
    """ListServices says TotalCount 3 + missing, and only ever returns the three services."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action) != (BAD, "ListServices"):
            return None
        services = [s.service for s in server.fleet[BAD]]
        start = (call.number - 1) * call.size
        return server.services_page(call, services[start : start + call.size], total=len(services) + missing)

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    assert_failure(run, region=BAD, service=None, codes=NOT_ADDING_UP)
    assert_region(run, BAD, complete=False)
    assert_region(run, GOOD, complete=True)
    # The services it did find are still scanned, exactly.
    assert_records(run, server)
    requests = server.count("ListServices", region=BAD)
    assert requests < REQUEST_BOUND, f"ListServices must end after bounded work, took {requests} requests"


@pytest.mark.parametrize(
    "total",
    [10**12, -1, "23", 23.5, True],
    ids=["10**12", "negative", "a string", "a float", "true"],
)
def test_an_implausible_instance_total_ends_that_listing_after_bounded_work(
    tmp_path: Path, total: Any
) -> None:
    """svc-b's 23 instances are served honestly, page by page, under an impossible TotalCount."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-b"):
            return None
        instances = server.service(BAD, "svc-b").instances
        start = (call.number - 1) * call.size
        return server.instances_page(call, instances[start : start + call.size], total=total)

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    requests = server.count("ListServiceInstances", region=BAD, service="svc-b")
    assert requests < REQUEST_BOUND, (
        f"TotalCount={total!r} must end the listing after bounded work (< {REQUEST_BOUND} requests), "
        f"the scanner sent {requests}"
    )
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    assert_failure(run, region=BAD, service="svc-b", codes=["ImplausibleTotalCount"])
    assert_region(run, GOOD, complete=True)
    assert_records(run, server, exact_except=[(BAD, "svc-b")])


@pytest.mark.parametrize("total", [10**12, -1, "3"], ids=["10**12", "negative", "a string"])
def test_an_implausible_service_total_fails_the_region_without_allocating_for_it(
    tmp_path: Path, total: Any
) -> None:
    """ListServices says 10**12 services (it has 3): no page list sized by it, no MemoryError."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action) != (BAD, "ListServices"):
            return None
        services = [s.service for s in server.fleet[BAD]]
        start = (call.number - 1) * call.size
        return server.services_page(call, services[start : start + call.size], total=total)

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    requests = server.count("ListServices", region=BAD)
    assert requests < REQUEST_BOUND, f"ListServices must end after bounded work, took {requests} requests"
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    assert_failure(run, region=BAD, service=None, codes=["ImplausibleTotalCount"])
    assert_region(run, BAD, complete=False)
    assert_region(run, GOOD, complete=True)
    if total == 10**12:
        # The page itself is well formed: the three services it lists are valid, still scanned.
        assert_records(run, server)
    else:
        # A page whose count is not a number may be refused whole: only what is written is checked.
        assert_records(run, server, exact_except=[(BAD, s.name) for s in server.fleet[BAD]])


def test_duplicate_instance_names_within_a_page_are_written_once_and_do_not_pass_as_complete(
    tmp_path: Path,
) -> None:
    """svc-a's one page lists an instance twice and counts it twice (TotalCount 5, 4 distinct)."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-a"):
            return None
        a, b, c, d = server.service(BAD, "svc-a").instances
        return server.instances_page(call, [a, b, b, c, d], total=5)

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    assert_verdict_matches(run, assert_failure(run, region=BAD, service="svc-a", codes=NOT_ADDING_UP))
    # All four distinct instances are real: each written once, untouched.
    assert_records(run, server, exact_except=[(BAD, "svc-a")], at_least_served=[(BAD, "svc-a")])
