"""One listing read whole, and proven so: the paging argument, and the code that carries it out.

A ``Listing`` depends on two things only: ``fetch`` (ask for page N of size S and hand the answer
to a callback) and ``emit`` (pass on records not emitted before). It serves both listings a scan
makes: a service's instances (ListServiceInstances) and a region's services (ListServices).

EAS pages by offset (``PageNumber``/``PageSize``) and says ``TotalCount`` on every page. We list
oldest first (instances ``Sort=StartTime&Order=asc``, services ``Sort=CreateTime&Order=asc``), so
a new item lands at the end and only a deletion moves the items after it, one place towards the
start. Names are unique and a deleted item does not come back.

- **Pass 1** (``FirstPass.WATCHED``) reads every page once, all but the first at once, between
  two looks at the listing's end: its TotalCount and the name of its last item, which, oldest
  first, is the newest. A listing that ListServices counted at more than one page is read last
  page first, and that answer is the opening look; the closing look, after every other page has
  been read, is a one-record request (``PageSize=1``) for the item at the same position, in the
  same order. (If the listing changed size since ListServices counted it, the first answer does
  not show its end, and a one-record look of its own opens the window.) Suppose both looks agree
  and every answer reports the same TotalCount. Then no item was created in between: a new one
  would be the last, or, deleted again, would have taken a pre-existing item's place in the
  count, and deletions are permanent. With no creation, any deletion would have lowered
  TotalCount. So every page was read from one unchanged listing, and the pass saw every item.
- Otherwise the listing is read again, **newest page first, one page at a time, page 1 last**.
  An item that exists throughout only ever moves towards page 1, so it cannot slip past a sweep
  that also moves towards page 1 a page at a time: if it was not on page k when page k was read,
  it was on a page below k, which is read later. That pass sees every item that existed
  throughout it. A pass is consistent when every answer said one TotalCount and the pass saw
  that many distinct items.
- Every item is emitted once: a listing remembers the names it has emitted until it ends.

ListServices is read the same way, but its pass 1 is page 1 (so workers start at once) and then a
newest-first sweep (``FirstPass.SWEEP``). A caller's own ``Sort``/``Order``, or a filter on a
field that changes (``InstanceStatus``), voids the argument (``FirstPass.AT_ONCE``: page 1, then
the rest at once): such listings are still checked and re-read when they visibly change, but a
change that hides itself cannot be ruled out.

What the API says is checked before it is believed. A TotalCount that is not a count, or above
``MAX_PLAUSIBLE_TOTAL``, ends the listing at once (``ImplausibleTotalCount``). An answer whose
items do not match what its own TotalCount puts on that page (short or empty before the count is
reached, more items than its page size, another page number than asked) cannot come from an
honest server, which counts and pages one listing in one answer: that pass is not consistent.
Once its answers stop backing the count, a pass asks for no page past one beyond the last page
that brought new items; pass 1 asks for no more pages after two that brought nothing new (empty,
or repeats), a sweep after two such pages that also did not back their count. So the work of a
pass is bounded by the pages that held items, never by the count a server sent, while an honest
listing is always swept whole, however it changes. A listing still inconsistent after
``max_passes`` is a failure: ``ImplausibleTotalCount`` if its last pass saw an answer that did
not back its count, else ``ListingUnstable``; its records are out all the same.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import repeat
from typing import Any, Final, NamedTuple

from scanner.eas.models import Page
from scanner.eas.params import page_count
from scanner.engine.stats import ServiceVerdict
from scanner.errors import RequestError

__all__ = [
    "IMPLAUSIBLE_TOTAL_COUNT",
    "LISTING_UNSTABLE",
    "MAX_PLAUSIBLE_TOTAL",
    "Deliver",
    "Emit",
    "Fetch",
    "FirstPass",
    "Listing",
    "ListingEnd",
    "ListingError",
    "ListingOutcome",
    "ListingState",
    "Parallel",
    "one_at_a_time",
]

#: The most items a listing may plausibly have (instances of a service, services of a region).
MAX_PLAUSIBLE_TOTAL: Final = 1_000_000

#: Failure codes of a listing that cannot be proven whole.
LISTING_UNSTABLE: Final = "ListingUnstable"
IMPLAUSIBLE_TOTAL_COUNT: Final = "ImplausibleTotalCount"

_get = dict.get

#: Takes one answer. Called before ``fetch`` returns (for instance pages: inside the request's
#: global slot, so a page's records are handed over before another request takes its place).
Deliver = Callable[[Page], Awaitable[None]]
#: ``fetch(page_number, page_size, deliver)``: request that page and give the answer to ``deliver``.
Fetch = Callable[[int, int, Deliver], Awaitable[object]]
#: Passes on records not emitted before (a page's worth, in page order).
Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
#: ``parallel(count, worker)``: run ``count`` copies of ``worker`` at once; when one raises, stop
#: the others and raise that error.
Parallel = Callable[[int, Callable[[], Awaitable[None]]], Awaitable[None]]


async def one_at_a_time(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    """A ``Parallel`` that runs one worker: the workers of a listing share their pages, so one
    worker reads them all."""
    await worker()


class ListingError(RequestError):
    """A listing that cannot be proven whole; ``code`` says why (``ListingUnstable``,
    ``ImplausibleTotalCount``). Never retried: it is a verdict on answers already received."""


class FirstPass(Enum):
    """How a listing's first pass reads it (see the module docstring)."""

    WATCHED = "watched"  # every page, all but the first at once, between two looks at its end
    AT_ONCE = "at_once"  # page 1, then the others at once: a caller's order, no end to watch
    SWEEP = "sweep"  # page 1, then newest page first, one at a time (ListServices)


class ListingEnd(NamedTuple):
    """What a look at a listing's end saw: its TotalCount and the name of its last item."""

    total: int
    last: Any


@dataclass(frozen=True, slots=True)
class ListingOutcome:
    """How a listing ended, when no request of it failed.

    ``verdict`` is ``complete`` (pass 1 was consistent), ``reread`` (a later pass was),
    ``unstable`` or ``failed``; the last two carry the ``failure`` to report (``ListingUnstable``,
    ``ImplausibleTotalCount``), without a region, action or service: the caller knows those.
    """

    verdict: ServiceVerdict
    passes: int
    emitted: int
    failure: ListingError | None = None


def end_of(page: Page, key: str) -> ListingEnd | None:
    """The listing's end, when ``page`` shows it; else None."""
    total = page.total_count
    items = page.items
    if total == 0:
        return None if items else ListingEnd(0, None)
    if items and (page.page_number - 1) * page.page_size + len(items) == total:
        return ListingEnd(total, items[-1].get(key))
    return None


class Listing:
    """Reads one listing to its verdict. ``run()`` raises only what ``fetch`` raises.

    ``key`` names an item within the listing (``InstanceName``, ``ServiceName``). ``estimate``
    is how many items the listing was said to have (ListServices' ``TotalInstance``): a
    ``WATCHED`` listing of more than a page starts at its last page. ``pages_at_once`` pages of
    pass 1 are read at once through ``parallel``. ``on_total`` is told the listing's size as it
    learns it (progress).
    """

    def __init__(
        self,
        fetch: Fetch,
        emit: Emit,
        *,
        key: str,
        page_size: int,
        max_passes: int,
        first_pass: FirstPass = FirstPass.WATCHED,
        estimate: int = 0,
        pages_at_once: int = 1,
        parallel: Parallel = one_at_a_time,
        on_total: Callable[[int], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._emit = emit
        self._key = key
        self._page_size = page_size
        self._max_passes = max_passes
        self._first_pass_kind = first_pass
        self._estimate = estimate
        self._pages_at_once = pages_at_once
        self._parallel = parallel
        self._on_total = on_total
        self.state = ListingState(key, page_size)
        self._opening: ListingEnd | None = None
        self._look: ListingEnd | None = None

    @property
    def emitted(self) -> int:
        return self.state.emitted

    async def run(self) -> ListingOutcome:
        state = self.state
        try:
            await self._first_pass()
            while not state.pass_consistent() and state.passes < self._max_passes:
                state.start_pass()
                self._tell(max(state.last_total, state.emitted))
                await self._sweep()
        except ListingError as exc:
            return ListingOutcome(ServiceVerdict.FAILED, state.passes, state.emitted, exc)
        if state.pass_consistent():
            verdict = ServiceVerdict.COMPLETE if state.passes == 1 else ServiceVerdict.REREAD
            return ListingOutcome(verdict, state.passes, state.emitted)
        if state.unbacked is not None:
            failure = ListingError(
                f"TotalCount {state.last_total} is not backed by the pages, still in the last of"
                f" {state.passes} pass(es): {state.unbacked}",
                code=IMPLAUSIBLE_TOTAL_COUNT,
            )
            return ListingOutcome(ServiceVerdict.FAILED, state.passes, state.emitted, failure)
        failure = ListingError(
            f"the listing kept changing: still inconsistent after {state.passes} pass(es)"
            f" (TotalCount {state.last_total}; items read: {state.emitted})",
            code=LISTING_UNSTABLE,
        )
        return ListingOutcome(ServiceVerdict.UNSTABLE, state.passes, state.emitted, failure)

    def _tell(self, total: int) -> None:
        if self._on_total is not None:
            self._on_total(total)

    # --- the passes ----------------------------------------------------------------------------

    async def _first_pass(self) -> None:
        state = self.state
        kind = self._first_pass_kind
        number = 1
        if kind is FirstPass.WATCHED and self._estimate > self._page_size:
            number = page_count(self._estimate, self._page_size)
        await self._fetch(number, self._page_size, functools.partial(self._take_first, number))
        total = state.last_total
        pages = page_count(total, state.page_size)  # at the page size the server used, should it cap ours
        self._tell(total)
        if kind is FirstPass.SWEEP:
            if pages > 1:
                await self._sweep()
            return
        if number == 1 == pages:
            return  # read whole in one answer
        before = self._opening
        if kind is FirstPass.AT_ONCE:
            await self._at_once(range(2, pages + 1))
            return
        if before is not None:
            numbers = range(1, number) if number == pages else range(1, pages + 1)
        else:
            # The first answer does not show the listing's end: it changed size since ListServices
            # counted it. Open the watched window now and read every page inside it.
            before = await self._end_look(total)
            numbers = range(1, pages + 1)
        await self._at_once(numbers)
        if await self._end_look(before.total) != before:
            state.mark_changed()

    async def _end_look(self, total: int) -> ListingEnd:
        """(TotalCount, name of the item at position ``total``), from one one-record request.

        While TotalCount is still ``total``, that item is the last of the listing. Same query and
        order as the pages, so a tie in StartTime cannot make two looks disagree.
        """
        number = max(total, 1)
        await self._fetch(number, 1, functools.partial(self._take_look, number))
        assert self._look is not None
        return self._look

    async def _at_once(self, numbers: range) -> None:
        """Read ``numbers`` with up to ``pages_at_once`` requests in flight.

        No page is asked for past ``state.pass_limit``, nor after a second page that brought
        nothing new (see ``ListingState.check``).
        """
        state = self.state
        pending: Iterator[int] = iter(numbers)

        async def worker() -> None:
            for number in pending:
                if number > state.pass_limit:
                    return  # past the listing's end, by what its answers said
                if state.pass_barren_pages > 1:
                    # Pages left unread (a sweep follows, should this be the first pass of many).
                    state.mark_changed()
                    return
                await self._read(number)

        await self._parallel(min(self._pages_at_once, len(numbers)), worker)

    async def _sweep(self) -> None:
        """One newest-first pass: the last page first, page 1 last, one page at a time.

        It starts at the last page the latest TotalCount puts items on, and skips the pages that an
        answer's own TotalCount shows are past the listing's end (which survivors never reach:
        they only move towards page 1). After an answer that does not back its count it goes on
        below the last page that brought new items; it stops at a second page that brought
        nothing new and did not back its count either (see ``ListingState.check``): pages that
        hold nothing are never walked one by one, and an honest listing is always swept whole.
        """
        state = self.state
        number = min(page_count(state.last_total, state.page_size), state.pass_limit)
        while number >= 1:
            await self._read(number)
            number = min(number - 1, state.pass_limit)
            if number >= 1 and state.pass_false_pages > 1:
                state.mark_changed()  # not read down to page 1: this pass proves nothing
                return

    # --- one answer ----------------------------------------------------------------------------

    def _read(self, number: int) -> Awaitable[object]:
        return self._fetch(number, self._page_size, functools.partial(self._take, number))

    async def _take(self, number: int, page: Page) -> None:
        """Accept a page, emit what is new in it, then judge it.

        Judged after emitting: a page's valid records are passed on whatever its count says.
        Neither the page nor its items are held while ``emit`` waits (a slow consumer of a
        ListServices listing would otherwise pin a page of full service objects per region).
        """
        state = self.state
        emitting = self._emit(state.accept(page))
        problem = None
        try:
            state.check(page, number)
        except ListingError as exc:
            problem = exc
        del page
        await emitting
        if problem is not None:
            raise problem

    async def _take_first(self, number: int, page: Page) -> None:
        self._opening = end_of(page, self._key) if self._first_pass_kind is FirstPass.WATCHED else None
        await self._take(number, page)

    async def _take_look(self, number: int, page: Page) -> None:
        self.state.check_look(page, number)
        items = page.items
        self._look = ListingEnd(page.total_count, items[0].get(self._key) if items else None)


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
        "pass_false_pages",
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
        #: Pages of this pass that brought no item new to the pass (empty, or repeats), and those
        #: of them that did not match their own TotalCount either (see ``check``).
        self.pass_barren_pages = 0
        self.pass_false_pages = 0
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
        self.pass_false_pages = 0
        self.unbacked = None

    def check(self, page: Page, number: int) -> None:
        """Judge the answer to a request for page ``number`` (its items accepted or not).

        Called after ``accept(page)``. Raises ``ListingError`` (``ImplausibleTotalCount``) for a
        TotalCount that is not a count or is above the plausible bound. Lowers ``pass_limit``, the
        last page worth asking for in this pass: to the last page this answer's TotalCount puts
        items on, or, when the answer does not match its own TotalCount, to one past the last
        page that brought new items. Counts the pages that brought nothing new to the pass
        (empty, or only repeats), and the *false* ones among them: those that did not match their
        own TotalCount either. An honest server's page is never false, however the listing
        changes, so a sweep may stop at false pages without voiding its proof; pass 1 may stop at
        barren ones, because an early stop only makes it inconsistent, and a sweep follows. So
        neither a count the pages do not back, nor a server that repeats a page whatever its
        number, makes a pass ask for pages by the count alone.
        """
        size = self._judge(page, number)
        if self._page_new:
            if number > self.top_page:
                self.top_page = number
        else:
            self.pass_barren_pages += 1
            if not size:
                self.pass_false_pages += 1
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
        """A TotalCount seen by a request of this pass that returned no items to keep (a look)."""
        self._pass_totals.add(total)
        self.last_total = total

    def mark_changed(self) -> None:
        """Evidence outside the pages (a different newest item, pages left unread) that this pass
        did not read one unchanged listing whole."""
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
        names = list(map(_get, items, repeat(self._key)))  # a loop in C: items are dicts
        if None in names:
            return self._accept_unkeyed(items, names)
        seen = self._seen
        if self.passes > 1:
            pass_seen = self._pass_seen
            before = len(pass_seen)
            pass_seen.update(names)
            self._page_new = len(pass_seen) - before
        if seen.isdisjoint(names):
            # The usual case: a page of new names, kept as it is. Added to ``seen`` at once (no
            # set of the page's own), and taken out again should the page repeat a name.
            before = len(seen)
            seen.update(names)
            if len(seen) - before == len(names):
                if self.passes == 1:
                    self._page_new = len(items)
                return items
            seen.difference_update(names)
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
