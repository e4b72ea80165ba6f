"""The scan's fan-out: regions → services → listings → records. The engine's only spawner of tasks.

Shape of one scan (every task lives in a task group owned by the one above it)::

    ScanJob.run
    └── per region: _scan_region
        ├── _discover_services    the region's ListServices listing: page 1, then newest page
        │                         first; feeds a small bounded stream, so discovery waits while
        │                         services queue up
        └── services_per_region × _service_worker
            └── _list_instances   one service's ListServiceInstances listing (up to
                                  pages_per_listing pages at once, in _in_parallel)

How a listing is read and proven whole is ``scanner.engine.listing``; how each request is paced,
bounded, retried and counted is ``scanner.engine.gate``. Records leave as one batch per page
through a bounded memory stream: a slow consumer blocks ``send``, which holds the request's
slots, which stops the fetching. Memory is bounded by (open listings × their dedup keys) +
(buffered pages), whatever the fleet's size.

Failures after retries are recorded, never raised: a failed region or service does not stop the
others. Only fatal conditions end the scan early: credentials that cannot be loaded, a region list
that cannot be read, every region refusing us, or any failure in fail-fast mode. They are kept in
``ScanJob.fatal`` for the consumer to raise once the stream ends.
"""

from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from scanner.clock import Clock
from scanner.eas.faults import service_gone
from scanner.eas.params import Action, InstanceQuery, ServiceQuery
from scanner.engine.config import Concurrency, Consistency, RetryPolicy
from scanner.engine.events import ScanEvent, UnitEnded, UnitsPlanned
from scanner.engine.gate import Gates, LimiterRegistry, RequestGate, Slots, at_once_or_wait
from scanner.engine.listing import MAX_PLAUSIBLE_TOTAL, Deliver, FirstPass, Listing
from scanner.engine.ports import EasApi
from scanner.engine.stats import Failure, LiveStats, ScanSummary, ServiceVerdict
from scanner.errors import RequestError, ScanFailedError, unwrap_group
from scanner.records import service_summary, tag_instances

__all__ = ["Batch", "ScanItem", "ScanJob", "ScanPlan", "ScanRun", "UnitFilter"]

#: What flows to the consumer: the records of one page.
Batch = list[dict[str, Any]]
#: Everything the stream carries: batches, and the events of units (``scanner.engine.events``).
ScanItem = Batch | ScanEvent
#: Which (account, region) units a scan lists, of those it finds: ``filter(account, region)``.
UnitFilter = Callable[[str | None, str], bool]


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """What to scan. ``regions=None`` means every region DescribeRegions lists."""

    regions: tuple[str, ...] | None
    services: frozenset[str] | None
    service_query: ServiceQuery
    instance_query: InstanceQuery
    home_region: str
    #: Only the units this accepts are listed (a resume, a shard); regions are still all found.
    units: UnitFilter | None = None


@dataclass(frozen=True, slots=True)
class _ServiceTarget:
    name: str
    summary: dict[str, Any]
    #: Instances, from the service's TotalInstance (0 if unknown): progress until its first page.
    instances_said: int


def _instances_said(target: _ServiceTarget) -> int:
    return target.instances_said


async def _in_parallel(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    """A listing's ``Parallel``: ``count`` copies of ``worker``; the first failure stops the rest
    and is raised as itself."""
    failures: list[Exception] = []

    async def run(scope: anyio.CancelScope) -> None:
        try:
            await worker()
        except Exception as exc:
            failures.append(exc)
            scope.cancel()  # the listing has failed; its other pages are moot

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(run, tg.cancel_scope)
    if failures:
        raise failures[0]


class ScanRun(ABC):
    """What ``ScanStream`` drives: a run that produces into ``send``, closes it when done, and keeps
    what ended it early in ``fatal`` (never raised) and its ``summary`` once ``finished``.

    One lifecycle for the single-account ``ScanJob`` and the multi-account ``AccountScan``; they
    give the work (``_produce``), the check once it ended on its own (``_check_ended``) and the
    summary (``_summarize``).
    """

    def __init__(self, send: MemoryObjectSendStream[ScanItem]) -> None:
        self._send = send
        self.fatal: BaseException | None = None
        self.cancelled = False
        self.summary: ScanSummary | None = None
        self.finished = anyio.Event()
        self._scope: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Run the scan to its end. Raises only cancellation from outside; all else is recorded."""
        try:
            async with self._send:
                with anyio.CancelScope() as self._scope:
                    try:
                        await self._produce()
                    except Exception as exc:
                        self._abort(unwrap_group(exc))
                self._check_ended()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True  # stopped from outside (the Scanner closed, the caller cancelled)
            raise
        finally:
            self.summary = self._summarize()
            self.finished.set()

    def stop(self) -> None:
        """Stop producing (the consumer is gone or asked to stop). The summary says cancelled."""
        self.cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    def _abort(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        if self._scope is not None:
            self._scope.cancel()

    @abstractmethod
    async def _produce(self) -> None:
        """The work, inside the run's cancel scope; an exception it raises becomes ``fatal``."""

    @abstractmethod
    def _check_ended(self) -> None:
        """Once the work ended without being cancelled: set ``fatal`` if the scan came to nothing."""

    @abstractmethod
    def _summarize(self) -> ScanSummary:
        """The summary, whatever ended the run (``cancelled`` and ``fatal`` are set by then)."""


class ScanJob(ScanRun):
    """One scan: produces batches into ``send`` and closes it when done. See the module docstring."""

    def __init__(
        self,
        api: EasApi,
        plan: ScanPlan,
        send: MemoryObjectSendStream[ScanItem],
        *,
        concurrency: Concurrency,
        consistency: Consistency,
        retry_policy: RetryPolicy,
        rate_limiters: LimiterRegistry,
        clock: Clock,
        rng: random.Random,
        fail_fast: bool = False,
        account: str | None = None,
        global_slots: Slots | None = None,
    ) -> None:
        super().__init__(send)
        self._api = api
        #: The AccountId records are tagged with (a multi-account scan's ``AccountScan``), or None.
        self.account = account
        self._plan = plan
        self._concurrency = concurrency
        self._page_size = consistency.page_size
        self._max_passes = consistency.max_passes
        self._clock = clock
        self._fail_fast = fail_fast
        query = plan.instance_query
        if query.sort is None and query.order is None:
            # Oldest first, so new instances land at the end: what the listing's proof needs.
            self._instance_query = dataclasses.replace(query, sort="StartTime", order="asc")
            self._instance_pass = FirstPass.WATCHED
        else:
            self._instance_query = query
            self._instance_pass = FirstPass.AT_ONCE
        services = plan.service_query
        if services.sort is None and services.order is None:
            services = dataclasses.replace(services, sort="CreateTime", order="asc")
        self._service_query = services

        self.stats = LiveStats(clock.monotonic())
        self._gates = Gates(
            concurrency=concurrency,
            limiters=rate_limiters,
            retry_policy=retry_policy,
            clock=clock,
            rng=rng,
            stats=self.stats,
            global_slots=global_slots,
        )
        # Listings of more than a page hold their emitted names until they end: few at a time.
        self._long_slots: dict[str, Slots] = {}
        self._global_long_slots = Slots(concurrency.long_listings)
        self._long_above = self._page_size * (concurrency.pages_per_listing + 1)
        self._found_services: set[str] = set()

    # --- the run -------------------------------------------------------------------------------

    async def _produce(self) -> None:
        regions = await self._planned_regions()
        async with anyio.create_task_group() as tg:
            for region in regions:
                tg.start_soon(self._scan_region, region)

    def _summarize(self) -> ScanSummary:
        missing: tuple[str, ...] = ()
        if self._plan.services is not None:
            missing = tuple(sorted(self._plan.services - self._found_services))
        return self.stats.summary(
            self._clock.monotonic(),
            cancelled=self.cancelled or self.fatal is not None,
            missing_services=missing,
        )

    def _check_ended(self) -> None:
        """Every region refused us: nothing could be listed."""
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
            found = await self._gates.region(home).request(
                Action.DESCRIBE_REGIONS, lambda: self._api.describe_regions(home)
            )
        except RequestError as exc:
            raise ScanFailedError(
                f"could not list the account's regions (DescribeRegions via {home}): {exc}"
            ) from exc
        return tuple(region.region_id for region in found)

    async def _planned_regions(self) -> tuple[str, ...]:
        """The regions found, announced with those the unit filter keeps (the ones listed)."""
        regions = await self._resolve_regions()
        accept = self._plan.units
        account = self.account
        scanning = regions if accept is None else tuple(r for r in regions if accept(account, r))
        await self._send_event(UnitsPlanned(account, regions, scanning))
        return scanning

    async def _send_event(self, event: ScanEvent) -> None:
        try:
            await at_once_or_wait(self._send.send_nowait, self._send.send, event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.stop()  # the consumer closed the stream: stop quietly
            await anyio.lowlevel.checkpoint()

    def _record_failure(self, region: str, service: str | None, exc: RequestError) -> None:
        failure = Failure(
            region=region,
            service=service,
            code=exc.kind,
            message=str(exc.message),
            action=exc.action,
            account=self.account,
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
        await self._unit_ended(region)

    async def _unit_ended(self, region: str) -> None:
        """Tell the consumer that the region's listing ended, after its last batch (same stream)."""
        if self.cancelled or self.fatal is not None:
            return  # cut short: the unit is neither complete nor proven incomplete
        counters = self.stats.region(region)
        complete = counters.error is None and counters.failed_services == 0 and counters.services_listed
        failures = tuple(failure for failure in self.stats.failures if failure.region == region)
        await self._send_event(UnitEnded(self.account, region, complete, failures, counters.instances_done))

    async def _discover_services(self, region: str, send: MemoryObjectSendStream[_ServiceTarget]) -> None:
        """The region's ListServices listing, each page's wanted services offered to the workers.

        Its pages are taken after the request's slots are given back: offering a service waits
        for a free worker, and a worker needs slots to finish.
        """
        counters = self.stats.region(region)
        gate = self._gates.region(region)
        api, query = self._api, self._service_query

        async def fetch(number: int, size: int, deliver: Deliver) -> None:
            # One expression: this frame keeps no reference to the page while deliver waits.
            await deliver(
                await gate.request(
                    Action.LIST_SERVICES,
                    lambda: api.list_services(region, query, page_number=number, page_size=size),
                    priority=MAX_PLAUSIBLE_TOTAL + 1,  # before any listing's: it names the work
                )
            )

        async def offer(services: list[dict[str, Any]]) -> None:
            counters.services_listed = True
            targets = self._targets(region, services)
            del services  # only the summaries wait for a free worker, not the full service objects
            # Largest first: a long listing is a chain of dependent round trips, so the scan's
            # tail is the longest chain started last (sorted within a page: bounded memory).
            targets.sort(key=_instances_said, reverse=True)
            for target in targets:
                await at_once_or_wait(send.send_nowait, send.send, target)

        def note_total(total: int) -> None:
            if self._plan.services is None:
                counters.services_known = max(counters.services_known, total)

        listing = Listing(
            fetch,
            offer,
            key="ServiceName",
            page_size=self._page_size,
            max_passes=self._max_passes,
            first_pass=FirstPass.SWEEP,
            on_total=note_total,
        )
        async with send:
            try:
                outcome = await listing.run()
            except RequestError as exc:
                self._record_failure(region, None, exc)
                return
            if outcome.failure is not None:
                failure = outcome.failure
                failure.region, failure.action = region, Action.LIST_SERVICES
                self._record_failure(region, None, failure)

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
            said = service.get("TotalInstance")
            if type(said) is not int or not 0 <= said <= MAX_PLAUSIBLE_TOTAL:
                said = 0  # unknown: the listing's own TotalCount will say
            counters.instances_known += said
            targets.append(_ServiceTarget(name, service_summary(service), said))
        return targets

    async def _service_worker(self, region: str, receive: MemoryObjectReceiveStream[_ServiceTarget]) -> None:
        long_slots = self._long_slots.get(region)
        if long_slots is None:
            long_slots = self._long_slots[region] = Slots(self._concurrency.long_listings_per_region)
        async with receive:
            while True:
                try:
                    target = await at_once_or_wait(receive.receive_nowait, receive.receive)
                except anyio.EndOfStream:
                    return
                if target.instances_said > self._long_above:
                    # A long listing holds its emitted names until it ends: few at a time, each
                    # read to its end quickly (``pages_per_listing`` at once), bounds memory.
                    # One whose pages after the first are read in one batch (at most
                    # ``pages_per_listing`` + 1 pages) is not held back: it is a chain of three
                    # round trips however many run, and holding it back makes the scan's tail.
                    async with long_slots, self._global_long_slots:
                        await self._list_instances(region, target)
                else:
                    await self._list_instances(region, target)

    # --- one service ---------------------------------------------------------------------------

    async def _list_instances(self, region: str, target: _ServiceTarget) -> None:
        counters = self.stats.region(region)
        stats = self.stats
        gate: RequestGate = self._gates.region(region)
        api, query, name, summary = self._api, self._instance_query, target.name, target.summary
        account = self.account
        known = target.instances_said  # this listing's share of counters.instances_known

        def note_total(total: int) -> None:
            nonlocal known
            counters.instances_known += total - known
            known = total

        def fetch(number: int, size: int, deliver: Deliver) -> Awaitable[object]:
            # deliver runs inside the request's global slot (see scanner.engine.gate).
            return gate.request(
                Action.LIST_SERVICE_INSTANCES,
                lambda: api.list_service_instances(region, name, query, page_number=number, page_size=size),
                deliver,
                priority=known,  # the longest listings' round trips first: they make the tail
            )

        async def emit(items: list[dict[str, Any]]) -> None:
            if not items:
                return
            batch = tag_instances(items, region, name, summary, account)
            try:
                await at_once_or_wait(self._send.send_nowait, self._send.send, batch)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.stop()  # the consumer closed the stream: stop quietly
                await anyio.lowlevel.checkpoint()  # delivers the cancellation now
                return
            stats.records += len(batch)
            counters.instances_done += len(batch)

        listing = Listing(
            fetch,
            emit,
            key="InstanceName",
            page_size=self._page_size,
            max_passes=self._max_passes,
            first_pass=self._instance_pass,
            estimate=target.instances_said,
            pages_at_once=self._concurrency.pages_per_listing,
            parallel=_in_parallel,
            on_total=note_total,
        )
        try:
            outcome = await listing.run()
        except RequestError as exc:
            if service_gone(exc):
                verdict = ServiceVerdict.DELETED
            else:
                verdict = ServiceVerdict.FAILED
                self._record_failure(region, name, exc)
        else:
            verdict = outcome.verdict
            if outcome.failure is not None:
                # Not proven whole: its records are out, but the scan cannot say it is complete.
                failure = outcome.failure
                failure.region, failure.action, failure.service = region, Action.LIST_SERVICE_INSTANCES, name
                self._record_failure(region, name, failure)
        note_total(listing.emitted)
        self.stats.service_done(region, name, verdict)
