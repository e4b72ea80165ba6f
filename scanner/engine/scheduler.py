"""The scan itself: regions → services → instance pages → records. The only module that spawns tasks.

Shape of one scan (every task lives in a task group owned by the one above it)::

    ScanJob.run
    └── per region: _scan_region
        ├── _discover_services    ListServices, one page at a time, newest page first; feeds a small
        │                         bounded stream, so discovery waits while services queue up
        └── services_per_region × _service_worker
            └── _list_instances   the first page (the last one, for a listing counted at more
                                  than one page), then the others at once (pages_per_listing
                                  workers), then newest-first re-reads while it is inconsistent

Every request passes, in order: its region's slot (``Concurrency.per_region``), its (region,
action) rate limiter, a global slot (``Concurrency.total``), and is retried per request by the
region's ``Retrier``. Records leave as one batch per page through a bounded memory stream: a slow
consumer blocks ``send``, which holds the slots, which stops the fetching. Memory is bounded by
(open listings × their dedup keys) + (buffered pages), whatever the fleet's size.

Failures after retries are recorded, never raised: a failed region or service does not stop the
others. Only fatal conditions end the scan early: credentials that cannot be loaded, a region list
that cannot be read, every region refusing us, or any failure in fail-fast mode. They are kept in
``ScanJob.fatal`` for the consumer to raise once the stream ends.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from scanner.clock import Clock
from scanner.eas.faults import service_gone
from scanner.eas.models import Page
from scanner.eas.params import Action, InstanceQuery, ServiceQuery
from scanner.engine.config import Concurrency, Consistency, RetryPolicy
from scanner.engine.pagination import (
    IMPLAUSIBLE_TOTAL_COUNT,
    LISTING_UNSTABLE,
    MAX_PLAUSIBLE_TOTAL,
    ListingError,
    ListingState,
    page_count,
)
from scanner.engine.ports import EasApi
from scanner.engine.ratelimit import RateLimiters
from scanner.engine.retry import Retrier, RetryBudget
from scanner.engine.stats import Failure, LiveStats, ScanSummary, ServiceVerdict
from scanner.errors import RequestError, ScanFailedError, ThrottledError
from scanner.records import service_summary, tag_instances

__all__ = ["Batch", "ScanJob", "ScanPlan"]

T = TypeVar("T")

#: What flows to the consumer: the records of one page.
Batch = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """What to scan. ``regions=None`` means every region DescribeRegions lists."""

    regions: tuple[str, ...] | None
    services: frozenset[str] | None
    service_query: ServiceQuery
    instance_query: InstanceQuery
    home_region: str


@dataclass(frozen=True, slots=True)
class _ServiceTarget:
    name: str
    summary: dict[str, Any]
    estimate: int  # instances, from the service's TotalInstance: a progress denominator until page 1


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _unwrap(exc: BaseException) -> BaseException:
    """A task group's error as the caller should see it: the error itself when it is one kind."""
    leaves = _leaves(exc)
    if leaves and all(type(leaf) is type(leaves[0]) for leaf in leaves):
        return leaves[0]
    return exc


def _instance_query_for_scan(query: InstanceQuery) -> InstanceQuery:
    # Oldest first, so new instances land at the end (see scanner.engine.pagination).
    if query.sort is None and query.order is None:
        return InstanceQuery(**{**_fields(query), "sort": "StartTime", "order": "asc"})
    return query


def _service_query_for_scan(query: ServiceQuery) -> ServiceQuery:
    if query.sort is None and query.order is None:
        return ServiceQuery(**{**_fields(query), "sort": "CreateTime", "order": "asc"})
    return query


def _fields(query: Any) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}


def _end_of(page: Page) -> tuple[int, Any] | None:
    """What ``_end_look`` would say, when ``page`` shows the listing's end; else None."""
    total = page.total_count
    items = page.items
    if total == 0:
        return None if items else (0, None)
    if items and (page.page_number - 1) * page.page_size + len(items) == total:
        return total, items[-1].get("InstanceName")
    return None


class _Slots:
    """``async with`` a token of an ``anyio.CapacityLimiter``, without a trip through the event loop
    when one is free.

    ``CapacityLimiter.acquire`` always yields once (a shielded checkpoint), even uncontended; every
    request takes three of these, so at full speed the yields cost more than the bookkeeping.
    ``acquire_nowait`` still refuses while anyone is queued (first come, first served), and the
    request's next await is a checkpoint anyway, where a cancellation lands.
    """

    __slots__ = ("_limiter",)

    def __init__(self, tokens: int) -> None:
        self._limiter = anyio.CapacityLimiter(tokens)

    async def __aenter__(self) -> None:
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._limiter.release()


class ScanJob:
    """One scan: produces batches into ``send`` and closes it when done. See the module docstring."""

    def __init__(
        self,
        api: EasApi,
        plan: ScanPlan,
        send: MemoryObjectSendStream[Batch],
        *,
        concurrency: Concurrency,
        consistency: Consistency,
        retry_policy: RetryPolicy,
        rate_limiters: RateLimiters,
        clock: Clock,
        rng: random.Random,
        fail_fast: bool = False,
    ) -> None:
        self._api = api
        self._plan = plan
        self._send = send
        self._concurrency = concurrency
        self._page_size = consistency.page_size
        self._max_passes = consistency.max_passes
        self._retry_policy = retry_policy
        self._rates = rate_limiters
        self._clock = clock
        self._rng = rng
        self._fail_fast = fail_fast
        self._instance_query = _instance_query_for_scan(plan.instance_query)
        self._service_query = _service_query_for_scan(plan.service_query)
        # The consistency proof needs our order: oldest first, so new instances land at the end.
        self._verifiable = plan.instance_query.sort is None and plan.instance_query.order is None

        self.stats = LiveStats(clock.monotonic())
        self.fatal: BaseException | None = None
        self.cancelled = False
        self.summary: ScanSummary | None = None
        self.finished = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._global_slots = _Slots(concurrency.total)
        self._region_slots: dict[str, _Slots] = {}
        self._long_slots: dict[str, _Slots] = {}
        self._global_long_slots = _Slots(concurrency.long_listings)
        self._retriers: dict[str, Retrier] = {}
        self._found_services: set[str] = set()

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the scan to its end. Raises only cancellation from outside; all else is recorded."""
        try:
            async with self._send:
                with anyio.CancelScope() as self._scope:
                    try:
                        regions = await self._resolve_regions()
                        async with anyio.create_task_group() as tg:
                            for region in regions:
                                tg.start_soon(self._scan_region, region)
                    except Exception as exc:
                        self._abort(_unwrap(exc))
                self._check_every_region_refused()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True  # stopped from outside (the Scanner closed, the caller cancelled)
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        missing: tuple[str, ...] = ()
        if self._plan.services is not None:
            missing = tuple(sorted(self._plan.services - self._found_services))
        self.summary = self.stats.summary(
            self._clock.monotonic(),
            cancelled=self.cancelled or self.fatal is not None,
            missing_services=missing,
        )
        self.finished.set()

    def _abort(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        if self._scope is not None:
            self._scope.cancel()

    def stop(self) -> None:
        """Stop producing (the consumer is gone or asked to stop). The summary says cancelled."""
        self.cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    def _check_every_region_refused(self) -> None:
        if self.fatal is not None or self.cancelled or not self.stats.regions:
            return
        regions = self.stats.regions
        if all(not c.services_listed and c.error for c in regions.values()):
            reasons = "; ".join(f"{name}: {c.error}" for name, c in regions.items())
            self.fatal = ScanFailedError(f"every region failed, nothing could be listed ({reasons})")

    async def _resolve_regions(self) -> tuple[str, ...]:
        if self._plan.regions is not None:
            return self._plan.regions
        home = self._plan.home_region
        try:
            found = await self._request(
                home, Action.DESCRIBE_REGIONS, lambda: self._api.describe_regions(home)
            )
        except RequestError as exc:
            raise ScanFailedError(
                f"could not list the account's regions (DescribeRegions via {home}): {exc}"
            ) from exc
        return tuple(region.region_id for region in found)

    # --- one request ---------------------------------------------------------------------------

    def _retrier(self, region: str) -> Retrier:
        retrier = self._retriers.get(region)
        if retrier is None:
            retrier = self._retriers[region] = Retrier(
                self._retry_policy,
                RetryBudget(self._retry_policy.budget),
                clock=self._clock,
                rng=self._rng,
                on_retry=self._count_retry,
            )
        return retrier

    def _count_retry(self, exc: BaseException, delay: float) -> None:
        self.stats.retries += 1

    async def _request(
        self,
        region: str,
        action: str,
        call: Callable[[], Awaitable[T]],
        deliver: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """One request, retried: region slot, then rate limiter, then a global slot.

        ``deliver`` runs on the answer before the global slot is released: a page's records are
        in the consumer's buffer before another request may take its place, so pages fetched but
        not handed over never exceed ``Concurrency.total``, and a slow consumer stops the fetching.
        Nothing global is held while waiting for the region's slot or pace, so a throttled region
        cannot hold up the others.
        """
        limiter = self._rates.get(region, action)
        region_slots = self._region_slots.get(region)
        if region_slots is None:
            region_slots = self._region_slots[region] = _Slots(self._concurrency.per_region)
        counters = self.stats.region(region)
        stats = self.stats
        global_slots = self._global_slots

        async def attempt() -> T:
            async with region_slots:
                sent_at = await limiter.acquire()
                async with global_slots:
                    stats.requests += 1
                    counters.requests += 1
                    try:
                        result = await call()
                    except ThrottledError as exc:
                        stats.throttled += 1
                        limiter.on_throttle(sent_at, exc.retry_after_ms)
                        raise
                    except Exception:
                        limiter.on_error(sent_at)  # answered all the same: slow start counts answers
                        raise
                    limiter.on_success(sent_at)
                    if isinstance(result, Page):
                        stats.bytes_received += result.body_bytes
                    if deliver is not None:
                        await deliver(result)
            return result

        return await self._retrier(region).call(attempt)

    def _services_page(self, region: str, number: int) -> Awaitable[Page]:
        return self._request(
            region,
            Action.LIST_SERVICES,
            lambda: self._api.list_services(
                region, self._service_query, page_number=number, page_size=self._page_size
            ),
        )

    def _read_page(
        self, region: str, target: _ServiceTarget, state: ListingState, number: int
    ) -> Awaitable[Page]:
        """Fetch a page of instances and hand its new records to the consumer (see ``_request``).

        The caller must not keep the page it returns: a listing stays open a long while, and a
        page kept by it pins its hundred decoded records (memory would grow with open listings).
        """

        async def emit(page: Page) -> None:
            await self._emit(region, target, state.accept(page))
            state.check(page, number)  # after: a page's valid records are kept, whatever its count says

        name = target.name
        return self._request(
            region,
            Action.LIST_SERVICE_INSTANCES,
            lambda: self._api.list_service_instances(
                region, name, self._instance_query, page_number=number, page_size=self._page_size
            ),
            emit,
        )

    def _record_failure(self, region: str, service: str | None, exc: RequestError) -> None:
        failure = Failure(
            region=region,
            service=service,
            code=exc.kind,
            message=str(exc.message),
            action=exc.action,
        )
        self.stats.fail(failure, region_level=service is None)
        if self._fail_fast:
            self._abort(exc)

    # --- a region ------------------------------------------------------------------------------

    async def _scan_region(self, region: str) -> None:
        self.stats.region(region)
        send, receive = anyio.create_memory_object_stream[_ServiceTarget](
            self._concurrency.services_per_region
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._discover_services, region, send)
            async with receive:
                for _ in range(self._concurrency.services_per_region):
                    tg.start_soon(self._service_worker, region, receive.clone())

    async def _discover_services(self, region: str, send: MemoryObjectSendStream[_ServiceTarget]) -> None:
        """ListServices, proven like an instance listing (see ``scanner.engine.pagination``).

        Page 1 first (its services go to the workers at once), then every page newest first, page
        1 last; while a pass is inconsistent, it is swept again, up to ``max_passes`` in all.
        Services already offered are offered once. A page that fails after retries is a failure of
        the region, and ends the passes (the region is incomplete already), not the sweep.
        """
        counters = self.stats.region(region)
        state = ListingState("ServiceName", self._page_size)
        failed = False

        async def read(number: int) -> None:
            nonlocal failed
            try:
                page = await self._services_page(region, number)
            except RequestError as exc:
                self._record_failure(region, None, exc)
                failed = True
                return
            counters.services_listed = True
            self._note_service_total(region, page.total_count)
            # Only the summaries wait for a free worker, not the page's full service objects
            # (a page is 100 of them, in every region): see also _first_pass.
            targets = self._targets(region, state.accept(page))
            implausible: ListingError | None = None
            try:
                state.check(page, number)
            except ListingError as exc:
                implausible = exc  # after its services are offered: they are scanned all the same
            del page
            await self._offer(targets, send)
            if implausible is not None:
                raise implausible

        async with send:
            try:
                await read(1)
                if not counters.services_listed:
                    return
                if page_count(state.last_total, state.page_size) > 1:
                    await self._sweep(state, read)
                while not (failed or state.pass_consistent()) and state.passes < self._max_passes:
                    state.start_pass()
                    await self._sweep(state, read)
            except ListingError as exc:
                exc.region, exc.action = region, Action.LIST_SERVICES
                self._record_failure(region, None, exc)
                return
            if not (failed or state.pass_consistent()):
                self._record_failure(region, None, self._inconsistent(state, region, Action.LIST_SERVICES))

    def _note_service_total(self, region: str, total: int) -> None:
        if self._plan.services is None and total <= MAX_PLAUSIBLE_TOTAL:
            counters = self.stats.region(region)
            counters.services_known = max(counters.services_known, total)

    def _targets(self, region: str, services: list[dict[str, Any]]) -> list[_ServiceTarget]:
        """The wanted services of a ListServices page, reduced to what a listing needs."""
        counters = self.stats.region(region)
        wanted = self._plan.services
        targets = []
        for service in services:
            name = service.get("ServiceName")
            if not isinstance(name, str) or (wanted is not None and name not in wanted):
                continue
            if wanted is not None:
                self._found_services.add(name)  # to name the wanted services never found
                counters.services_known += 1
            estimate = service.get("TotalInstance")
            if type(estimate) is not int or not 0 <= estimate <= MAX_PLAUSIBLE_TOTAL:
                estimate = 0  # unknown: the listing's own TotalCount will say
            counters.instances_known += estimate
            targets.append(_ServiceTarget(name, service_summary(service), estimate))
        return targets

    @staticmethod
    async def _offer(targets: list[_ServiceTarget], send: MemoryObjectSendStream[_ServiceTarget]) -> None:
        for target in targets:
            try:
                send.send_nowait(target)  # no trip through the event loop while there is room
            except anyio.WouldBlock:
                await send.send(target)

    async def _service_worker(self, region: str, receive: MemoryObjectReceiveStream[_ServiceTarget]) -> None:
        long_slots = self._long_slots.get(region)
        if long_slots is None:
            long_slots = self._long_slots[region] = _Slots(self._concurrency.long_listings_per_region)
        async with receive:
            while True:
                # receive() always yields first; a worker only waits when nothing is queued.
                try:
                    target = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        target = await receive.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                if target.estimate > self._page_size:
                    # A long listing holds its emitted names until it ends: few at a time, each
                    # read to its end quickly (``pages_per_listing`` at once), bounds memory.
                    async with long_slots, self._global_long_slots:
                        await self._list_instances(region, target)
                else:
                    await self._list_instances(region, target)

    # --- one service ---------------------------------------------------------------------------

    async def _list_instances(self, region: str, target: _ServiceTarget) -> None:
        counters = self.stats.region(region)
        known = target.estimate  # this listing's share of counters.instances_known

        def set_known(value: int) -> None:
            nonlocal known
            counters.instances_known += value - known
            known = value

        state = ListingState("InstanceName", self._page_size)
        error: RequestError | None = None

        async def read(number: int) -> None:
            await self._read_page(region, target, state, number)

        try:
            await self._first_pass(region, target, state, set_known)
            while not state.pass_consistent() and state.passes < self._max_passes:
                state.start_pass()
                set_known(max(state.last_total, state.emitted))
                await self._sweep(state, read)
        except RequestError as exc:
            error = exc

        if error is not None:
            if service_gone(error):
                verdict = ServiceVerdict.DELETED
            else:
                verdict = ServiceVerdict.FAILED
                if isinstance(error, ListingError):
                    error.region, error.action = region, Action.LIST_SERVICE_INSTANCES
                    error.service = target.name
                self._record_failure(region, target.name, error)
        elif state.pass_consistent():
            verdict = ServiceVerdict.COMPLETE if state.passes == 1 else ServiceVerdict.REREAD
        else:
            # Not proven whole: its records are out, but the scan cannot say it is complete.
            inconsistent = self._inconsistent(state, region, Action.LIST_SERVICE_INSTANCES, target.name)
            verdict = ServiceVerdict.UNSTABLE
            if inconsistent.code == IMPLAUSIBLE_TOTAL_COUNT:
                verdict = ServiceVerdict.FAILED
            self._record_failure(region, target.name, inconsistent)
        set_known(state.emitted)
        self.stats.service_done(region, target.name, verdict)

    def _inconsistent(
        self, state: ListingState, region: str, action: str, service: str | None = None
    ) -> ListingError:
        """The failure of a listing still inconsistent after its last pass."""
        what = "instances" if service is not None else "services"
        if state.unbacked is not None:
            code = IMPLAUSIBLE_TOTAL_COUNT
            message = (
                f"TotalCount {state.last_total} is not backed by the pages, in each of"
                f" {state.passes} pass(es): {state.unbacked}"
            )
        else:
            code = LISTING_UNSTABLE
            message = (
                f"the listing kept changing: still inconsistent after {state.passes} pass(es)"
                f" (TotalCount {state.last_total}; {what} read: {state.emitted})"
            )
        return ListingError(message, code=code, region=region, action=action, service=service)

    async def _first_pass(
        self, region: str, target: _ServiceTarget, state: ListingState, set_known: Callable[[int], None]
    ) -> None:
        """Every page once, all but the first at once, between two looks at the listing's end.

        See ``scanner.engine.pagination``: if the last instance (oldest first: the newest) and
        TotalCount are the same before the first page is sent and after the last page is read,
        every page was read from one unchanged listing. A listing that ListServices counted at
        more than one page is read last page first: that answer is the opening look, so only the
        closing look costs a request of its own.
        """
        verifiable = self._verifiable
        number = 1
        if verifiable and target.estimate > self._page_size:
            number = page_count(target.estimate, self._page_size)
        page = await self._read_page(region, target, state, number)
        total = page.total_count
        pages = page_count(total, state.page_size)  # at the page size the server used, should it cap ours
        before = _end_of(page) if verifiable else None
        del page
        set_known(total)
        if number == 1 == pages:
            return  # read whole in one answer
        if before is not None:
            numbers = range(1, number) if number == pages else range(1, pages + 1)
        elif verifiable:
            # The first answer does not show the listing's end: it changed size since ListServices
            # counted it. Open the watched window now and read every page inside it.
            before = await self._end_look(region, target.name, state, total)
            numbers = range(1, pages + 1)
        else:
            numbers = range(2, pages + 1)
        await self._fetch_at_once(region, target, state, numbers)
        if before is not None and await self._end_look(region, target.name, state, before[0]) != before:
            state.mark_changed()

    async def _end_look(self, region: str, service: str, state: ListingState, total: int) -> tuple[int, Any]:
        """(TotalCount, name of the instance at position ``total``), from one one-record request.

        While TotalCount is still ``total``, that instance is the last of the listing. Same query
        and order as the pages, so a tie in StartTime cannot make two looks disagree.
        """
        number = max(total, 1)
        page = await self._request(
            region,
            Action.LIST_SERVICE_INSTANCES,
            lambda: self._api.list_service_instances(
                region, service, self._instance_query, page_number=number, page_size=1
            ),
        )
        state.check_look(page, number)
        return page.total_count, page.items[0].get("InstanceName") if page.items else None

    async def _fetch_at_once(
        self, region: str, target: _ServiceTarget, state: ListingState, numbers: range
    ) -> None:
        """Fetch pages concurrently (``pages_per_listing`` at a time); raise the first failure.

        No page is asked for beyond ``state.pass_limit`` (see ``ListingState.check``), nor after
        a second page that brought nothing new: pages that hold nothing are never walked one by one.
        """
        pending: Iterator[int] = iter(numbers)
        failures: list[RequestError] = []

        async def worker(scope: anyio.CancelScope) -> None:
            for number in pending:
                if number > state.pass_limit:
                    return  # past the listing's end, by what its answers said
                if state.pass_barren_pages > 1:
                    state.mark_changed()  # pages left unread: this pass proves nothing
                    return
                try:
                    await self._read_page(region, target, state, number)
                except RequestError as exc:
                    failures.append(exc)
                    scope.cancel()  # the listing has failed; its other pages are moot
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(self._concurrency.pages_per_listing, len(numbers))):
                tg.start_soon(worker, tg.cancel_scope)
        if failures:
            raise failures[0]

    @staticmethod
    async def _sweep(state: ListingState, read: Callable[[int], Awaitable[None]]) -> None:
        """One newest-first pass: the last page first, page 1 last, one page at a time.

        It starts at the last page the latest TotalCount puts items on, and skips the pages that an
        answer's own TotalCount shows are past the listing's end (which survivors never reach:
        they only move towards page 1). After an answer short of its own count it goes on below
        the last page that brought new items; it stops at a second page that brought nothing new
        (empty, or repeats): pages that hold nothing are never walked one by one.
        """
        number = min(page_count(state.last_total, state.page_size), state.pass_limit)
        while number >= 1:
            await read(number)
            number = min(number - 1, state.pass_limit)
            if number >= 1 and state.pass_barren_pages > 1:
                state.mark_changed()  # not read down to page 1: this pass proves nothing
                return

    async def _emit(self, region: str, target: _ServiceTarget, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        batch = tag_instances(items, region, target.name, target.summary)
        try:
            try:
                self._send.send_nowait(batch)  # the usual case: room in the consumer's buffer
            except anyio.WouldBlock:
                await self._send.send(batch)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.stop()  # the consumer closed the stream: stop quietly
            await anyio.lowlevel.checkpoint()  # delivers the cancellation now
            return
        self.stats.records += len(batch)
        self.stats.region(region).instances_done += len(batch)
