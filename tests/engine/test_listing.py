"""The listing on its own, against a list in memory: dedup, the consistency verdict, page orders."""

from __future__ import annotations

from typing import Any

import pytest

from scanner.eas.models import Page
from scanner.eas.params import page_count
from scanner.engine.listing import Deliver, FirstPass, Listing, ListingState
from scanner.engine.stats import ServiceVerdict


def page(names: list[str], total: int, number: int) -> Page:
    return Page([{"InstanceName": n} for n in names], total, number, 2, "r")


def test_a_listing_state_dedups_across_passes_and_judges_consistency() -> None:
    state = ListingState("InstanceName", 2)
    assert [i["InstanceName"] for i in state.accept(page(["a", "b"], 5, 1))] == ["a", "b"]
    assert [i["InstanceName"] for i in state.accept(page(["b", "c"], 4, 2))] == ["c"]  # b shifted
    assert not state.pass_consistent()
    state.start_pass()
    for number, names in ((2, ["c", "d"]), (1, ["a", "c"])):
        state.accept(page(names, 4, number))
    assert state.emitted == 4
    assert not state.pass_consistent()  # 3 distinct seen in the pass, TotalCount 4


def test_an_empty_listing_has_one_page() -> None:
    assert page_count(0, 100) == 1
    assert page_count(5, 2) == 3


def test_items_without_a_key_are_emitted_as_they_come() -> None:
    unkeyed = ListingState("InstanceName", 2)
    assert len(unkeyed.accept(Page([{"X": 1}, {"X": 1}], 2, 1, 2, "r"))) == 2
    assert unkeyed.pass_consistent()


def test_a_page_repeating_a_name_yields_it_once() -> None:
    state = ListingState("InstanceName", 3)
    items = [{"InstanceName": "a"}, {"InstanceName": "a"}, {"InstanceName": "b"}]
    assert [i["InstanceName"] for i in state.accept(Page(items, 3, 1, 3, "r"))] == ["a", "b"]


class Pages:
    """A listing in memory, paged like EAS; records the requests."""

    def __init__(self, count: int) -> None:
        self.names = [f"i{n:04d}" for n in range(count)]
        self.requests: list[tuple[int, int]] = []
        self.emitted: list[str] = []

    async def fetch(self, number: int, size: int, deliver: Deliver) -> None:
        self.requests.append((number, size))
        chunk = self.names[(number - 1) * size : number * size]
        await deliver(Page([{"InstanceName": n} for n in chunk], len(self.names), number, size, "r"))

    async def emit(self, items: list[dict[str, Any]]) -> None:
        self.emitted.extend(item["InstanceName"] for item in items)


@pytest.mark.asyncio
async def test_a_sweep_reads_newest_page_first_page_1_last() -> None:
    pages = Pages(5)
    listing = Listing(pages.fetch, pages.emit, key="InstanceName", page_size=2, max_passes=3,
                      first_pass=FirstPass.SWEEP)  # fmt: skip
    outcome = await listing.run()
    assert pages.requests == [(1, 2), (3, 2), (2, 2), (1, 2)]
    assert sorted(pages.emitted) == pages.names
    assert outcome.verdict is ServiceVerdict.COMPLETE


@pytest.mark.asyncio
async def test_a_watched_listing_reads_its_last_page_first_and_closes_with_a_look() -> None:
    pages = Pages(5)
    listing = Listing(pages.fetch, pages.emit, key="InstanceName", page_size=2, max_passes=3, estimate=5)
    outcome = await listing.run()
    assert pages.requests == [(3, 2), (1, 2), (2, 2), (5, 1)]
    assert pages.emitted == ["i0004", "i0000", "i0001", "i0002", "i0003"]
    assert outcome == type(outcome)(ServiceVerdict.COMPLETE, passes=1, emitted=5)


@pytest.mark.asyncio
async def test_a_callers_order_is_read_at_once_without_looks() -> None:
    pages = Pages(5)
    listing = Listing(pages.fetch, pages.emit, key="InstanceName", page_size=2, max_passes=3,
                      first_pass=FirstPass.AT_ONCE, estimate=5)  # fmt: skip
    outcome = await listing.run()
    assert pages.requests == [(1, 2), (2, 2), (3, 2)]
    assert outcome.verdict is ServiceVerdict.COMPLETE


@pytest.mark.asyncio
async def test_a_deletion_hidden_by_a_creation_is_seen_by_the_closing_look() -> None:
    # [a, b], a page each. Page 1, the opening look (b is last), page 1 again; then a is deleted
    # and c created: b moves onto page 1, already read, and TotalCount stays 2. Only the closing
    # look (c is last now) shows the change; the newest-first re-read then finds b.
    pages = Pages(2)
    served = 0
    fetch = pages.fetch

    async def churning_fetch(number: int, size: int, deliver: Deliver) -> None:
        nonlocal served
        served += 1
        if served == 4:
            pages.names = [pages.names[1], "c"]
        await fetch(number, size, deliver)

    listing = Listing(churning_fetch, pages.emit, key="InstanceName", page_size=1, max_passes=3)
    outcome = await listing.run()
    assert pages.requests[:5] == [(1, 1), (2, 1), (1, 1), (2, 1), (2, 1)]
    assert "i0001" in pages.emitted
    assert outcome.verdict is ServiceVerdict.REREAD
