"""A region's services: its ListServices listing, each page's wanted services offered as targets.

One ``ServiceDiscovery`` serves every region of a scan. ``run(region, send)`` reads the region's
ListServices listing (page 1, then newest page first: ``FirstPass.SWEEP`` in
``scanner.engine.listing``), keeps the services the plan wants, reduces each to a
``ServiceTarget`` (what a listing of its instances needs) and offers them, largest first within a
page, to the region's service workers through ``send``, a small bounded stream: discovery waits
while services queue up. A request that fails after retries, or a listing that cannot be proven
whole, is handed to ``on_failure`` (the region is then incomplete); the services found are still
offered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio.streams.memory import MemoryObjectSendStream

from scanner.eas.params import Action, ServiceQuery
from scanner.engine.gate import Gates, at_once_or_wait
from scanner.engine.listing import MAX_PLAUSIBLE_TOTAL, Deliver, FirstPass, Listing
from scanner.engine.ports import EasApi
from scanner.engine.stats import LiveStats
from scanner.errors import DecodeError, RequestError
from scanner.records import service_summary

__all__ = ["FailureSink", "ServiceDiscovery", "ServiceTarget"]

#: ``on_failure(region, service, error)``: a request failed after retries, or a listing could not
#: be proven whole (``service`` is None for the region's ListServices listing).
FailureSink = Callable[[str, str | None, RequestError], None]


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """One service to list: its name, its records' ``Service`` object, and its size as said."""

    name: str
    summary: dict[str, Any]
    #: Instances, from the service's TotalInstance (0 if unknown): progress until its first page.
    instances_said: int


def _instances_said(target: ServiceTarget) -> int:
    return target.instances_said


class ServiceDiscovery:
    """The ListServices listings of a scan's regions (see the module docstring)."""

    def __init__(
        self,
        api: EasApi,
        gates: Gates,
        stats: LiveStats,
        *,
        query: ServiceQuery,
        wanted: frozenset[str] | None,
        page_size: int,
        max_passes: int,
        on_failure: FailureSink,
    ) -> None:
        self._api = api
        self._gates = gates
        self._stats = stats
        if query.sort is None and query.order is None:
            # Oldest first, so new services land at the end: what the listing's proof needs.
            query = dataclasses.replace(query, sort="CreateTime", order="asc")
        self._query = query
        self._wanted = wanted
        self._page_size = page_size
        self._max_passes = max_passes
        self._on_failure = on_failure
        #: The wanted services found, in any region (to name those never found).
        self.found: set[str] = set()

    async def run(self, region: str, send: MemoryObjectSendStream[ServiceTarget]) -> None:
        """List the region's services and offer the wanted ones to ``send``; close it when done.

        Its pages are taken after the request's slots are given back: offering a service waits
        for a free worker, and a worker needs slots to finish.
        """
        counters = self._stats.region(region)
        gate = self._gates.region(region)
        api, query = self._api, self._query

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
            targets = self.targets(region, services)
            del services  # only the summaries wait for a free worker, not the full service objects
            # Largest first: a long listing is a chain of dependent round trips, so the scan's
            # tail is the longest chain started last (sorted within a page: bounded memory).
            targets.sort(key=_instances_said, reverse=True)
            for target in targets:
                await at_once_or_wait(send.send_nowait, send.send, target)

        def note_total(total: int) -> None:
            if self._wanted is None:
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
                self._on_failure(region, None, exc)
                return
            if outcome.failure is not None:
                failure = outcome.failure
                failure.region, failure.action = region, Action.LIST_SERVICES
                self._on_failure(region, None, failure)

    def targets(self, region: str, services: list[dict[str, Any]]) -> list[ServiceTarget]:
        """The wanted services of a ListServices page, reduced to what a listing needs."""
        counters = self._stats.region(region)
        wanted = self._wanted
        targets = []
        for service in services:
            name = service.get("ServiceName")
            if type(name) is not str or not name:
                # A service the API lists but names in no way a listing can use: its instances
                # cannot be read, so the region is not whole (skipping it would be a silent loss).
                self._on_failure(region, None, _unnamed(region, name))
                continue
            if wanted is not None and name not in wanted:
                continue
            if wanted is not None:
                self.found.add(name)
                counters.services_known += 1
            said = service.get("TotalInstance")
            if type(said) is not int or not 0 <= said <= MAX_PLAUSIBLE_TOTAL:
                said = 0  # unknown: the listing's own TotalCount will say
            counters.instances_known += said
            targets.append(ServiceTarget(name, service_summary(service), said))
        return targets


def _unnamed(region: str, name: Any) -> DecodeError:
    problem = "missing" if name is None else f"{name!r}, not a non-empty string"
    return DecodeError(
        f"ListServices in {region} lists a service whose ServiceName is {problem}: its instances "
        "cannot be listed, so the region is incomplete (a fault in the API's answer)",
        region=region,
        action=Action.LIST_SERVICES,
        code="UnnamedService",
    )
