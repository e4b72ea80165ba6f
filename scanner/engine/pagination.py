"""Paging a listing that may change while it is read: page plans, dedup, and consistency checks.

Pure bookkeeping; the scheduler does the fetching. The reasoning:

EAS pages by offset (``PageNumber``/``PageSize``) and says ``TotalCount`` on every page. We list
instances oldest first (``Sort=StartTime&Order=asc``), so a new instance lands at the end and only
a deletion moves the instances after it, one place towards the start. Names are unique and a
deleted instance does not come back.

- **Pass 1** reads every page once, all but the first at once, between two looks at the
  listing's end: its TotalCount and the name of its last instance, which, oldest first, is the
  newest. A listing that ListServices counted at more than one page is read last page first, and
  that answer is the opening look; the closing look, after every other page has been read, is a
  one-record request (``PageSize=1``) for the instance at the same position, in the same order.
  (If the listing changed size since ListServices counted it, the first answer does not show its
  end, and a one-record look of its own opens the window.) Suppose both looks agree and every
  answer reports the same TotalCount. Then no instance was created in between: a new one would
  be the last, or, deleted again, would have taken a pre-existing instance's place in the count,
  and deletions are permanent. With no creation, any deletion would have lowered TotalCount. So
  every page was read from one unchanged listing, and the pass saw every instance exactly.
- Otherwise the listing is read again, **newest page first, one page at a time, page 1 last**.
  An instance that exists throughout only ever moves towards page 1, so it cannot slip past a
  sweep that also moves towards page 1 a page at a time: if it was not on page k when page k was
  read, it was on a page below k, which is read later. That pass sees every instance that existed
  throughout it.
- Every instance is emitted once: a listing remembers the names it has emitted until it ends.

These guarantees assume what EAS does: a new instance starts after every existing one, and a
restart keeps its place. A caller's own ``Sort``/``Order``, or a filter on a field that changes
(``InstanceStatus``), voids them: such listings are still checked (TotalCount, page sums) and
re-read when they visibly change, but a change that hides itself cannot be ruled out.

What the API says is checked before it is believed. A TotalCount above ``MAX_PLAUSIBLE_TOTAL``
ends the listing at once (``ImplausibleTotalCount``). An answer whose items do not match what its
own TotalCount puts on that page (a short or empty page before the count is reached, more items
than the page size, another page number than asked) cannot come from an honest server, which
counts and pages one listing in one answer: the pass is not consistent, and a short answer stops
the pass asking for further pages, so the work a pass does is bounded by the pages that held
items, never by the count the server sent. A listing still inconsistent after its last pass is a
failure: ``ImplausibleTotalCount`` if that pass saw such an answer, else ``ListingUnstable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from scanner.eas.models import Page
from scanner.errors import RequestError

__all__ = [
    "IMPLAUSIBLE_TOTAL_COUNT",
    "LISTING_UNSTABLE",
    "MAX_PLAUSIBLE_TOTAL",
    "ListingError",
    "ListingState",
    "descending_pages",
    "page_count",
]

#: The most items a listing may plausibly have (instances of a service, services of a region).
MAX_PLAUSIBLE_TOTAL: Final = 1_000_000
#: Failure codes of a listing that cannot be proven whole.
LISTING_UNSTABLE: Final = "ListingUnstable"
IMPLAUSIBLE_TOTAL_COUNT: Final = "ImplausibleTotalCount"


class ListingError(RequestError):
    """A listing that cannot be proven whole; ``code`` says why (``ListingUnstable``,
    ``ImplausibleTotalCount``). Never retried: it is a verdict on answers already received."""


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` items (at least 1: an empty listing still has page 1)."""
    return max(1, -(-total // page_size))


def descending_pages(total: int, page_size: int) -> Iterator[int]:
    """The page numbers of a newest-first sweep: last page first, page 1 last."""
    return iter(range(page_count(total, page_size), 0, -1))


class ListingState:
    """Dedup and consistency bookkeeping of one listing across its passes.

    ``key`` is the item field that identifies an item within the listing (``InstanceName`` for
    instances, ``ServiceName`` for services).
    """

    __slots__ = (
        "_key",
        "_page_new",
        "_pass_changed",
        "_pass_seen",
        "_pass_totals",
        "_pass_unkeyed",
        "_seen",
        "last_total",
        "page_size",
        "pass_barren_pages",
        "pass_limit",
        "passes",
        "top_page",
        "unbacked",
        "unkeyed",
    )

    def __init__(self, key: str, page_size: int) -> None:
        self._key = key
        self.page_size = page_size
        self._seen: set[Any] = set()
        self._pass_seen: set[Any] = set()
        self._pass_totals: set[int] = set()
        self._pass_unkeyed = 0
        self._pass_changed = False
        #: The highest page number worth asking for in this pass (see ``check``).
        self.pass_limit = MAX_PLAUSIBLE_TOTAL
        #: The highest page number that brought items new to its pass, in any pass.
        self.top_page = 0
        #: Pages of this pass that brought no item new to the pass (empty, or repeats).
        self.pass_barren_pages = 0
        self._page_new = 0  # items of the last accepted page new to the pass
        #: Why an answer of this pass did not match its own TotalCount; None while every one did.
        self.unbacked: str | None = None
        #: Items that lacked the key field: emitted as they come, since they cannot be deduplicated.
        self.unkeyed = 0
        self.passes = 0
        self.last_total = 0
        self.start_pass()

    def start_pass(self) -> None:
        self.passes += 1
        self._pass_totals = set()
        self._pass_seen = set()
        self._pass_unkeyed = 0
        self._pass_changed = False
        self.pass_limit = MAX_PLAUSIBLE_TOTAL
        self.pass_barren_pages = 0
        self.unbacked = None

    def check(self, page: Page, number: int) -> None:
        """Judge the answer to a request for page ``number`` (its items accepted or not).

        Called after ``accept(page)``. Raises ``ListingError`` (``ImplausibleTotalCount``) for a
        TotalCount that is not a count or is above the plausible bound. Lowers ``pass_limit``, the
        last page worth asking for in this pass: to the last page this answer's TotalCount puts
        items on, or, when the answer does not match its own TotalCount, to one past the last
        page that brought new items. Counts the pages that brought nothing new to the pass (empty,
        or only repeats). So neither a count the pages do not back, nor a server that repeats a
        page whatever its number, makes a pass ask for pages by the count alone.
        """
        if self._page_new:
            if number > self.top_page:
                self.top_page = number
        else:
            self.pass_barren_pages += 1
        size = self._judge(page, number)
        limit = page_count(page.total_count, size) if size else self.top_page + 1
        if limit < self.pass_limit:
            self.pass_limit = limit

    def check_look(self, page: Page, number: int) -> None:
        """``check`` for a one-record look at the listing's end, which asks no further pages."""
        self._judge(page, number)
        self.note_total(page.total_count)

    def _judge(self, page: Page, number: int) -> int:
        """The page size the answer pages by, or 0 when it does not match its own TotalCount."""
        total = page.total_count
        if type(total) is not int or not 0 <= total <= MAX_PLAUSIBLE_TOTAL:
            raise ListingError(
                f"TotalCount {total!r} is not a count between 0 and {MAX_PLAUSIBLE_TOTAL:,}"
                " (the plausible bound)",
                code=IMPLAUSIBLE_TOTAL_COUNT,
            )
        size = page.page_size if page.page_size > 0 else self.page_size
        held = len(page.items)
        put = total - (number - 1) * size  # items the TotalCount puts on this page and beyond
        expected = size if put > size else max(put, 0)
        if held == expected and page.page_number == number:
            return size
        if page.page_number != number:
            self._note_unbacked(f"page {number} was answered as page {page.page_number}")
        else:
            self._note_unbacked(
                f"page {number} held {held} item(s) where TotalCount {total} puts {expected}"
                f" (page size {page.page_size})"
            )
        return 0

    def _note_unbacked(self, reason: str) -> None:
        if self.unbacked is None:
            self.unbacked = reason

    def note_total(self, total: int) -> None:
        """A TotalCount seen by a request of this pass that returned no items to keep (a probe)."""
        self._pass_totals.add(total)
        self.last_total = total

    def mark_changed(self) -> None:
        """Evidence outside the pages (a different newest instance) that the listing changed."""
        self._pass_changed = True

    @property
    def emitted(self) -> int:
        return len(self._seen) + self.unkeyed

    def accept(self, page: Page) -> list[dict[str, Any]]:
        """Record a page; return its items not emitted before (in page order)."""
        self._pass_totals.add(page.total_count)
        self.last_total = page.total_count
        if page.page_size > 0:
            self.page_size = page.page_size  # the server's paging, should it cap what we ask
        items = page.items
        key = self._key
        names = [item.get(key) for item in items]
        if None in names:
            return self._accept_unkeyed(items, names)
        seen = self._seen
        if self.passes > 1:
            pass_seen = self._pass_seen
            before = len(pass_seen)
            pass_seen.update(names)
            self._page_new = len(pass_seen) - before
        distinct = set(names)
        if len(distinct) == len(names) and seen.isdisjoint(distinct):
            seen |= distinct  # the usual case: a page of new names, kept as it is
            if self.passes == 1:
                self._page_new = len(items)
            return items
        fresh = []
        for item, name in zip(items, names, strict=True):
            if name not in seen:
                seen.add(name)
                fresh.append(item)
        if self.passes == 1:
            self._page_new = len(fresh)
        return fresh

    def _accept_unkeyed(self, items: list[dict[str, Any]], names: list[Any]) -> list[dict[str, Any]]:
        fresh = []
        new = 0  # to the pass; an item without a key counts as new (it cannot be told apart)
        for item, name in zip(items, names, strict=True):
            if name is None:
                self._pass_unkeyed += 1
                new += 1
                if self.passes == 1:
                    self.unkeyed += 1
                    fresh.append(item)
                continue
            if self.passes > 1 and name not in self._pass_seen:
                self._pass_seen.add(name)
                new += 1
            if name not in self._seen:
                self._seen.add(name)
                fresh.append(item)
                if self.passes == 1:
                    new += 1
        self._page_new = new
        return fresh

    def pass_consistent(self) -> bool:
        """Whether the current pass saw one unchanging listing, read whole."""
        # In pass 1 every name seen is a name seen in this pass, so the shared set is the count.
        distinct = len(self._seen if self.passes == 1 else self._pass_seen)
        return (
            not self._pass_changed
            and self.unbacked is None
            and len(self._pass_totals) == 1
            and distinct + self._pass_unkeyed == self.last_total
        )
