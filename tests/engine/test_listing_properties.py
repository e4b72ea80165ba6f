"""Properties of ``Listing``, the paging proof, against a listing that changes while it is read.

A Hypothesis state machine drives one ``Listing`` by hand: every request it makes (several at
once in pass 1) waits until the machine serves it, and between any two steps items are created
(at the end, oldest first) and deleted (anywhere), the churn EAS sees. Each answer is honest: the
TotalCount and the page of the listing as it is when the answer is made. The guarantee checked is
the one ``scanner.engine.listing`` proves: every item present throughout the listing is emitted,
and none twice; an honest listing never fails, and is unstable only after its last pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from scanner.eas.models import Page
from scanner.engine.listing import Deliver, FirstPass, Listing, ListingOutcome
from scanner.engine.stats import ServiceVerdict

KEY = "Name"
#: How many items are created, or deleted, before an answer: mostly none.
CHURN = st.sampled_from([0, 0, 0, 1, 2])


@dataclass(frozen=True)
class Want:
    number: int
    size: int


class Suspend:
    """What a request awaits: the driver answers it with ``(index, page)``, ``index`` being the
    request it chose among those waiting."""

    def __init__(self, wants: list[Want]) -> None:
        self.wants = wants

    def __await__(self) -> Generator[Suspend, Any, Any]:
        answer = yield self
        return answer


async def fetch_by_hand(number: int, size: int, deliver: Deliver) -> None:
    _, page = await Suspend([Want(number, size)])
    await deliver(page)


async def interleaved(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    """A ``Parallel`` whose workers' requests are all offered to the driver, which picks the order."""
    waiting: list[tuple[Coroutine[Any, Any, None], Want]] = []

    def step(coro: Coroutine[Any, Any, None], value: Any) -> None:
        try:
            suspended = coro.send(value)
        except StopIteration:
            return
        assert isinstance(suspended, Suspend)
        assert len(suspended.wants) == 1
        waiting.append((coro, suspended.wants[0]))

    try:
        for _ in range(count):
            coro = worker()
            assert isinstance(coro, Coroutine)
            step(coro, None)
        while waiting:
            index, page = await Suspend([want for _, want in waiting])
            coro, _ = waiting.pop(index)
            step(coro, (0, page))
    except BaseException:
        for coro, _ in waiting:
            coro.close()
        raise


def honest_page(items: list[str], want: Want) -> Page:
    chunk = items[(want.number - 1) * want.size : want.number * want.size]
    return Page([{KEY: name} for name in chunk], len(items), want.number, want.size, "r")


class Driver:
    """Runs a listing's coroutine step by step, answering its requests from ``answer``."""

    def __init__(self, listing: Listing) -> None:
        self.requests: list[Want] = []
        self.outcome: ListingOutcome | None = None
        self._coro = listing.run()
        self.waiting: Suspend | None = None
        self._advance(None)

    def _advance(self, value: Any) -> None:
        try:
            suspended = self._coro.send(value)
        except StopIteration as stop:
            self.outcome = stop.value
            self.waiting = None
            return
        assert isinstance(suspended, Suspend)
        self.waiting = suspended

    def serve(self, index: int, answer: Callable[[Want], Page]) -> None:
        assert self.waiting is not None
        want = self.waiting.wants[index]
        self.requests.append(want)
        self._advance((index, answer(want)))

    def finish(self, answer: Callable[[Want], Page], limit: int = 100_000) -> ListingOutcome:
        for _ in range(limit):
            if self.waiting is None:
                break
            self.serve(0, answer)
        assert self.outcome is not None, "the listing did not end"
        return self.outcome


class Recorder:
    def __init__(self) -> None:
        self.emitted: list[str] = []

    async def emit(self, items: list[dict[str, Any]]) -> None:
        self.emitted.extend(item[KEY] for item in items)


class ListingUnderChurn(RuleBasedStateMachine):
    @initialize(
        count=st.integers(0, 9),
        size=st.integers(1, 3),
        first_pass=st.sampled_from([FirstPass.WATCHED, FirstPass.SWEEP]),
        max_passes=st.integers(2, 4),
        at_once=st.integers(1, 3),
        told=st.booleans(),
    )
    def start(
        self, count: int, size: int, first_pass: FirstPass, max_passes: int, at_once: int, told: bool
    ) -> None:
        self.items = [f"i{n:03d}" for n in range(count)]  # the listing now, oldest first
        self.serial = count
        self.initial = set(self.items)
        self.deleted: set[str] = set()
        self.ever = set(self.items)
        self.max_passes = max_passes
        self.first_pass = first_pass
        self.last_answered = set(self.items)  # the listing when the last request was answered
        self.recorder = Recorder()
        listing = Listing(
            fetch_by_hand,
            self.recorder.emit,
            key=KEY,
            page_size=size,
            max_passes=max_passes,
            first_pass=first_pass,
            estimate=count if told else 0,
            pages_at_once=at_once,
            parallel=interleaved,
        )
        self.driver = Driver(listing)

    def answer(self, want: Want) -> Page:
        return honest_page(self.items, want)

    @precondition(lambda self: self.driver.waiting is not None)
    @rule(data=st.data())
    def serve_a_request(self, data: st.DataObject) -> None:
        """Churn (often none), then answer one of the requests waiting, as the listing is now."""
        for _ in range(data.draw(CHURN, label="creations")):
            self.create()
        for _ in range(data.draw(CHURN, label="deletions")):
            if self.items:
                self.deleted.add(
                    self.items.pop(data.draw(st.integers(0, len(self.items) - 1), label="victim"))
                )
        assert self.driver.waiting is not None
        index = data.draw(st.integers(0, len(self.driver.waiting.wants) - 1), label="request")
        self.last_answered = set(self.items)
        self.driver.serve(index, self.answer)

    def create(self) -> None:
        name = f"n{self.serial:03d}"
        self.serial += 1
        self.items.append(name)
        self.ever.add(name)

    @precondition(lambda self: self.driver.waiting is None)
    @rule()
    def ended(self) -> None:
        """The listing has ended: nothing more can happen to it."""

    @invariant()
    def nothing_is_emitted_twice(self) -> None:
        emitted = self.recorder.emitted
        assert len(emitted) == len(set(emitted))

    def teardown(self) -> None:
        if self.driver.waiting is not None:
            self.last_answered = set(self.items)  # no churn from here on
        outcome = self.driver.finish(self.answer)
        emitted = self.recorder.emitted
        assert len(emitted) == len(set(emitted)), "an item was emitted twice"
        survivors = self.initial - self.deleted
        assert survivors <= set(emitted), f"missed {sorted(survivors - set(emitted))}"
        assert set(emitted) <= self.ever
        assert outcome.emitted == len(emitted)
        assert outcome.verdict is not ServiceVerdict.FAILED, outcome.failure
        if outcome.verdict is ServiceVerdict.UNSTABLE:
            assert outcome.passes == self.max_passes
            assert outcome.failure is not None
            assert outcome.failure.code == "ListingUnstable"
        else:
            assert outcome.failure is None
        if outcome.verdict is ServiceVerdict.COMPLETE:
            assert outcome.passes == 1
            if self.first_pass is FirstPass.WATCHED:
                # Proven read from one unchanged listing: exactly the listing at its end.
                assert set(emitted) == self.last_answered


ListingUnderChurn.TestCase.settings = settings(
    max_examples=300, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestListingUnderChurn = ListingUnderChurn.TestCase


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(0, 40),
    size=st.integers(1, 7),
    first_pass=st.sampled_from(list(FirstPass)),
    at_once=st.integers(1, 4),
    told=st.booleans(),
)
def test_an_unchanging_listing_is_read_once_and_whole(
    count: int, size: int, first_pass: FirstPass, at_once: int, told: bool
) -> None:
    items = [f"i{n:03d}" for n in range(count)]
    recorder = Recorder()
    listing = Listing(fetch_by_hand, recorder.emit, key=KEY, page_size=size, max_passes=3,
                      first_pass=first_pass, estimate=count if told else 0, pages_at_once=at_once,
                      parallel=interleaved)  # fmt: skip
    driver = Driver(listing)
    outcome = driver.finish(lambda want: honest_page(items, want))
    assert sorted(recorder.emitted) == items
    assert outcome.verdict is ServiceVerdict.COMPLETE
    pages = max(1, -(-count // size))
    # Every page once, plus at most: a first page read again, and the two looks at the end.
    assert len(driver.requests) <= pages + 3


#: Servers that do not page honestly: each takes the honest page and the true item list.
LIARS: dict[str, Callable[[Page, list[str], Want], Page]] = {
    "a count above its items": lambda page, items, want: Page(
        page.items, len(items) + 5 * want.size, page.page_number, page.page_size, "r"
    ),
    "a huge count": lambda page, items, want: Page(
        page.items, 999_999, page.page_number, page.page_size, "r"
    ),
    "page 1 whatever PageNumber says": lambda page, items, want: Page(
        honest_page(items, Want(1, want.size)).items, len(items), want.number, want.size, "r"
    ),
    "page 1, answered as page 1": lambda page, items, want: Page(
        honest_page(items, Want(1, want.size)).items, len(items), 1, want.size, "r"
    ),
    "pages one longer than their size": lambda page, items, want: Page(
        honest_page(items, Want(want.number, want.size + 1)).items, len(items), want.number, want.size, "r"
    ),
    "pages one shorter than their size": lambda page, items, want: Page(
        page.items[:-1] if want.size > 1 else page.items, len(items), want.number, want.size, "r"
    ),
}


@settings(max_examples=200, deadline=None)
@given(
    liar=st.sampled_from(sorted(LIARS)),
    count=st.integers(3, 40),
    size=st.integers(2, 6),
    first_pass=st.sampled_from([FirstPass.WATCHED, FirstPass.SWEEP]),
    at_once=st.integers(1, 4),
    max_passes=st.integers(1, 4),
)
def test_a_server_that_does_not_page_honestly_is_never_complete_and_costs_bounded_work(
    liar: str, count: int, size: int, first_pass: FirstPass, at_once: int, max_passes: int
) -> None:
    items = [f"i{n:03d}" for n in range(count)]
    lie = LIARS[liar]
    recorder = Recorder()
    listing = Listing(fetch_by_hand, recorder.emit, key=KEY, page_size=size, max_passes=max_passes,
                      first_pass=first_pass, estimate=count, pages_at_once=at_once,
                      parallel=interleaved)  # fmt: skip
    driver = Driver(listing)
    outcome = driver.finish(lambda want: lie(honest_page(items, want), items, want))
    emitted = recorder.emitted
    assert len(emitted) == len(set(emitted))
    one_page = count <= size  # these servers answer page 1 honestly
    if not (one_page and liar in ("page 1 whatever PageNumber says", "page 1, answered as page 1",
                                  "pages one longer than their size")):  # fmt: skip
        assert outcome.verdict in (ServiceVerdict.UNSTABLE, ServiceVerdict.FAILED), liar
        assert outcome.failure is not None
        assert outcome.failure.code in ("ListingUnstable", "ImplausibleTotalCount")
    # Per pass: the pages that hold items, two looks, a first page read again, what was in flight
    # when a pass stopped, and two pages that hold nothing.
    pages_with_items = max(1, -(-count // size))
    assert len(driver.requests) <= max_passes * (pages_with_items + 3 + at_once + 2)
