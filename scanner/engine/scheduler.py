"""The scan's fan-out: regions → services → listings → records. The engine's only spawner of tasks.

Shape of one scan (every task lives in a task group owned by the one above it)::

    ScanJob.run
    └── per region: _scan_region
        ├── ServiceDiscovery.run      the region's ListServices listing (engine/discovery.py):
        │                             feeds a small bounded stream of targets, so discovery
        │                             waits while services queue up
        └── services_per_region × InstanceListings.worker    (engine/instances.py)
            └── InstanceListings.list   one service's ListServiceInstances listing (up to
                                        pages_per_listing pages at once)

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

import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from scanner.clock import Clock
from scanner.eas.params import Action, InstanceQuery, ServiceQuery
from scanner.engine.config import Concurrency, Consistency, RetryPolicy
from scanner.engine.discovery import ServiceDiscovery, ServiceTarget
from scanner.engine.events import Batch, ScanEvent, ScanItem, UnitEnded, UnitsPlanned
from scanner.engine.gate import Gates, LimiterRegistry, Slots, at_once_or_wait
from scanner.engine.instances import InstanceListings
from scanner.engine.ports import EasApi
from scanner.engine.stats import Failure, LiveStats, ScanSummary
from scanner.errors import RequestError, ScanFailedError, unwrap_group

__all__ = ["Batch", "ScanItem", "ScanJob", "ScanPlan", "ScanRun", "UnitFilter"]

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


async def _in_parallel(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    """A listing's ``Parallel``: ``count`` copies of ``worker``; the first failure stops the rest
    and is raised as itself. One copy runs in the caller's task (a task less per listing; with
    ``count`` 1, no task group at all)."""
    if count == 1:
        await worker()
        return
    failures: list[Exception] = []

    async def run(scope: anyio.CancelScope) -> None:
        try:
            await worker()
        except Exception as exc:
            failures.append(exc)
            scope.cancel()  # the listing has failed; its other pages are moot

    async with anyio.create_task_group() as tg:
        for _ in range(count - 1):
            tg.start_soon(run, tg.cancel_scope)
        await run(tg.cancel_scope)
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
        self._clock = clock
        self._fail_fast = fail_fast
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
        self._discovery = ServiceDiscovery(
            api,
            self._gates,
            self.stats,
            query=plan.service_query,
            wanted=plan.services,
            page_size=consistency.page_size,
            max_passes=consistency.max_passes,
            on_failure=self._record_failure,
        )
        self._listings = InstanceListings(
            api,
            self._gates,
            self.stats,
            send,
            query=plan.instance_query,
            concurrency=concurrency,
            page_size=consistency.page_size,
            max_passes=consistency.max_passes,
            account=account,
            on_failure=self._record_failure,
            stop=self.stop,
            parallel=_in_parallel,
        )

    # --- the run -------------------------------------------------------------------------------

    async def _produce(self) -> None:
        regions = await self._planned_regions()
        async with anyio.create_task_group() as tg:
            for region in regions:
                tg.start_soon(self._scan_region, region)

    def _summarize(self) -> ScanSummary:
        missing: tuple[str, ...] = ()
        if self._plan.services is not None:
            missing = tuple(sorted(self._plan.services - self._discovery.found))
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
        self.stats.no_unit_kept = bool(regions) and not scanning
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
        send, receive = anyio.create_memory_object_stream[ServiceTarget](
            self._concurrency.services_per_region
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._discovery.run, region, send)
            async with receive:
                for _ in range(self._concurrency.services_per_region):
                    tg.start_soon(self._listings.worker, region, receive.clone())
        await self._unit_ended(region)

    async def _unit_ended(self, region: str) -> None:
        """Tell the consumer that the region's listing ended, after its last batch (same stream)."""
        if self.cancelled or self.fatal is not None:
            return  # cut short: the unit is neither complete nor proven incomplete
        counters = self.stats.region(region)
        complete = counters.error is None and counters.failed_services == 0 and counters.services_listed
        failures = tuple(failure for failure in self.stats.failures if failure.region == region)
        await self._send_event(UnitEnded(self.account, region, complete, failures, counters.instances_done))
