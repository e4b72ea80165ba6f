"""Listing bookkeeping: dedup across pages and passes, and the consistency verdict."""

from __future__ import annotations

from scanner.eas.models import Page
from scanner.engine.pagination import ListingState, descending_pages, page_count


def test_pagination_state_dedups_and_judges_consistency() -> None:
    def page(names: list[str], total: int, number: int) -> Page:
        return Page([{"InstanceName": n} for n in names], total, number, 2, "r")

    state = ListingState("InstanceName", 2)
    assert [i["InstanceName"] for i in state.accept(page(["a", "b"], 5, 1))] == ["a", "b"]
    assert [i["InstanceName"] for i in state.accept(page(["b", "c"], 4, 2))] == ["c"]  # b shifted
    assert not state.pass_consistent()
    state.start_pass()
    for number, names in ((2, ["c", "d"]), (1, ["a", "c"])):
        state.accept(page(names, 4, number))
    assert state.emitted == 4
    assert not state.pass_consistent()  # 3 distinct seen in the pass, TotalCount 4
    assert list(descending_pages(5, 2)) == [3, 2, 1]
    assert page_count(0, 100) == 1
    unkeyed = ListingState("InstanceName", 2)
    assert len(unkeyed.accept(Page([{"X": 1}, {"X": 1}], 2, 1, 2, "r"))) == 2
    assert unkeyed.pass_consistent()


def test_a_page_repeating_a_name_yields_it_once() -> None:
    state = ListingState("InstanceName", 3)
    items = [{"InstanceName": "a"}, {"InstanceName": "a"}, {"InstanceName": "b"}]
    assert [i["InstanceName"] for i in state.accept(Page(items, 3, 1, 3, "r"))] == ["a", "b"]
