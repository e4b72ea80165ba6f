"""The instances of a region's services: its service workers, each reading one listing at a time.

One ``InstanceListings`` serves every region of a scan. ``worker(region, receive)`` takes the
targets discovery offers (``scanner.engine.discovery``) until the stream ends; ``services_per_region``
of them run per region. Each target's ListServiceInstances listing is read by a ``Listing``
(``scanner.engine.listing``: the paging proof), up to ``pages_per_listing`` pages at once, every
request through the region's gate (``scanner.engine.gate``). A page's new records are tagged
(``scanner.records``) and sent to the consumer as one batch, inside the request's global slot.

The service's verdict goes to the statistics; a failure (after retries, or a listing that cannot
be proven whole) to ``on_failure``. A service the API says is gone is ``deleted``, not failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from scanner.eas.faults import service_gone
from scanner.eas.params import Action, InstanceQuery
from scanner.engine.config import Concurrency
from scanner.engine.discovery import FailureSink, ServiceTarget
from scanner.engine.events import ScanItem
from scanner.engine.gate import Gates, RequestGate, Slots, at_once_or_wait
from scanner.engine.listing import Deliver, FirstPass, Listing, Parallel
from scanner.engine.ports import EasApi
from scanner.engine.stats import LiveStats, ServiceVerdict
from scanner.errors import RequestError
from scanner.records import tag_instances

__all__ = ["InstanceListings"]


class InstanceListings:
    """The service listings of a scan's regions (see the module docstring).

    ``send`` is the consumer's stream; when the consumer has closed it, ``stop()`` is called and
    the listing ends quietly. ``account`` tags every record in a multi-account scan. ``parallel``
    runs a listing's page workers (the scheduler's: it is the engine's only spawner of tasks).
    """

    def __init__(
        self,
        api: EasApi,
        gates: Gates,
        stats: LiveStats,
        send: MemoryObjectSendStream[ScanItem],
        *,
        query: InstanceQuery,
        concurrency: Concurrency,
        page_size: int,
        max_passes: int,
        account: str | None,
        on_failure: FailureSink,
        stop: Callable[[], None],
        parallel: Parallel,
    ) -> None:
        self._api = api
        self._gates = gates
        self._stats = stats
        self._send = send
        if query.sort is None and query.order is None:
            # Oldest first, so new instances land at the end: what the listing's proof needs.
            self._query = dataclasses.replace(query, sort="StartTime", order="asc")
            self._first_pass = FirstPass.WATCHED
        else:
            self._query = query
            self._first_pass = FirstPass.AT_ONCE
        self._concurrency = concurrency
        self._page_size = page_size
        self._max_passes = max_passes
        self._account = account
        self._on_failure = on_failure
        self._stop = stop
        self._parallel = parallel
        # Listings of more than a page hold their emitted names until they end: few at a time.
        self._long_slots: dict[str, Slots] = {}
        self._global_long_slots = Slots(concurrency.long_listings)
        self._long_above = page_size * (concurrency.pages_per_listing + 1)

    async def worker(self, region: str, receive: MemoryObjectReceiveStream[ServiceTarget]) -> None:
        """List the targets of ``receive``, one at a time, until the stream ends."""
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
                        await self.list(region, target)
                else:
                    await self.list(region, target)

    async def list(self, region: str, target: ServiceTarget) -> None:
        """Read one service's instances to its verdict."""
        counters = self._stats.region(region)
        stats = self._stats
        gate: RequestGate = self._gates.region(region)
        api, query, name, summary = self._api, self._query, target.name, target.summary
        account = self._account
        send = self._send
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
                await at_once_or_wait(send.send_nowait, send.send, batch)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._stop()  # the consumer closed the stream: stop quietly
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
            first_pass=self._first_pass,
            estimate=target.instances_said,
            pages_at_once=self._concurrency.pages_per_listing,
            parallel=self._parallel,
            on_total=note_total,
        )
        try:
            outcome = await listing.run()
        except RequestError as exc:
            if service_gone(exc):
                verdict = ServiceVerdict.DELETED
            else:
                verdict = ServiceVerdict.FAILED
                self._on_failure(region, name, exc)
        else:
            verdict = outcome.verdict
            if outcome.failure is not None:
                # Not proven whole: its records are out, but the scan cannot say it is complete.
                failure = outcome.failure
                failure.region, failure.action, failure.service = region, Action.LIST_SERVICE_INSTANCES, name
                self._on_failure(region, name, failure)
        note_total(listing.emitted)
        stats.service_done(region, name, verdict)
