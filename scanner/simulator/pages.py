"""The answers of the three EAS operations, as JSON bytes, cached while nothing changes.

Each method returns a *payload*: the response body without its ``RequestId`` (which differs on
every response), so payloads can be cached and shared; ``with_request_id`` puts the id in front.
Cache keys include the version of what a payload was rendered from (a service's version for its
instance pages, the region's version for its service pages), which churn bumps.

Orders (documented API behaviour where there is one, ours where there is not):

- ListServiceInstances: by StartTime, ties by InstanceName (never needed: start times are unique
  within a service), ascending unless ``Order=desc``; the same with or without ``Sort=StartTime``.
  ``desc`` is the exact reverse of ``asc``.
- ListServices: by ``Sort`` (default CreateTime), ties by ServiceName then ServiceId, descending
  (newest first) unless ``Order=asc``.

Paging: ``PageSize`` is capped at ``MAX_PAGE_SIZE`` (100) and the response reports the size used;
a page past the end is empty, with the true ``TotalCount``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson

from scanner.eas.params import MAX_PAGE_SIZE, InstanceQuery, ServiceQuery, page_count, parse_paging
from scanner.eas.signing import canonical_query
from scanner.errors import ConfigError
from scanner.simulator.cache import PageCache
from scanner.simulator.fleet import Fleet, instance_matches
from scanner.simulator.model import Service

__all__ = ["Pages", "ServiceNotFound", "parse_query", "with_request_id"]

_SELECTIONS: Final = 256  # filtered/sorted selections kept (they are cheap, pages are not)
_PARSED: Final = 16_384  # raw query strings remembered with their parsed form


class ServiceNotFound(LookupError):
    """ListServiceInstances named a service the region does not have (or no longer has)."""


def parse_query(raw_query: str) -> dict[str, str]:
    """Decode a raw query string as the signature check does (``+`` is a space); last value wins."""
    params: dict[str, str] = {}
    if raw_query:
        for pair in raw_query.split("&"):
            if pair:
                key, _, value = pair.partition("=")
                params[unquote_plus(key)] = unquote_plus(value)
    return params


def with_request_id(payload: bytes, request_id: str) -> bytes:
    """``{"RequestId": ..., <payload's fields>}``: the id first, as the API sends it (one copy)."""
    return b"".join((b'{"RequestId":"', request_id.encode(), b'",', memoryview(payload)[1:]))


def _window(total: int, page_number: int, size: int, descending: bool) -> tuple[int, int]:
    """Ascending positions ``[lo, hi)`` of the requested page (reverse them when descending)."""
    start = (page_number - 1) * size
    if start >= total:
        return 0, 0
    if descending:
        return max(0, total - start - size), total - start
    return start, min(total, start + size)


# What a request's query means, once parsed: (filters, descending, PageNumber, effective PageSize)
# for instances, (query, PageNumber, effective PageSize) for services. Hashable: part of cache keys.
_InstancePage = tuple[InstanceQuery, bool, int, int]
_ServicePage = tuple[ServiceQuery, int, int]


def _parse_instance_page(raw_query: str) -> _InstancePage:
    params = parse_query(raw_query)
    query: InstanceQuery = InstanceQuery.from_params(params)
    paging = parse_paging(params)
    filters = dataclasses.replace(query, sort=None, order=None)
    return filters, query.order == "desc", paging.page_number, min(paging.page_size, MAX_PAGE_SIZE)


def _parse_service_page(raw_query: str) -> _ServicePage:
    params = parse_query(raw_query)
    query: ServiceQuery = ServiceQuery.from_params(params)
    paging = parse_paging(params)
    return query, paging.page_number, min(paging.page_size, MAX_PAGE_SIZE)


class Pages:
    """Renders (and caches) DescribeRegions, ListServices and ListServiceInstances payloads."""

    def __init__(self, fleet: Fleet, cache: PageCache, *, scope: str = "") -> None:
        self._fleet = fleet
        self._cache = cache
        # Part of every cache key: fleets sharing one cache (an organisation's accounts) never mix.
        self._scope = scope
        self._selections: OrderedDict[Hashable, Any] = OrderedDict()
        # Raw query string -> its meaning. Parsing and validating a query costs more than serving
        # a cached page, and a scan sends the same few query shapes over and over.
        self._instance_queries: dict[str, _InstancePage] = {}
        self._service_queries: dict[str, _ServicePage] = {}
        self._regions = orjson.dumps(
            {"Regions": [{"RegionId": r, "RegionName": state.name} for r, state in fleet.regions.items()]}
        )

    def regions(self) -> bytes:
        return self._regions

    # --- memos ----------------------------------------------------------------------------------

    def _selection(self, key: Hashable) -> Any:
        value = self._selections.get(key)
        if value is not None:
            self._selections.move_to_end(key)
        return value

    def _keep(self, key: Hashable, value: Any) -> None:
        self._selections[key] = value
        if len(self._selections) > _SELECTIONS:
            self._selections.popitem(last=False)

    def _instance_page(self, raw_query: str) -> _InstancePage:
        page = self._instance_queries.get(raw_query)
        if page is None:
            page = _parse_instance_page(raw_query)  # raises ConfigError: never remembered
            if len(self._instance_queries) >= _PARSED:
                self._instance_queries.clear()
            self._instance_queries[raw_query] = page
        return page

    def _service_page(self, raw_query: str) -> _ServicePage:
        page = self._service_queries.get(raw_query)
        if page is None:
            page = _parse_service_page(raw_query)
            if len(self._service_queries) >= _PARSED:
                self._service_queries.clear()
            self._service_queries[raw_query] = page
        return page

    # --- ListServices ----------------------------------------------------------------------------

    def services(self, region: str, raw_query: str) -> bytes:
        """The ListServices payload for ``region`` (raises ``ConfigError`` naming a bad parameter)."""
        page = self._service_page(raw_query)
        state = self._fleet.region(region)
        key = ("S", self._scope, region, state.version, page)
        payload = self._cache.get(key)
        if payload is not None:
            return payload
        query, page_number, size = page
        selection_key = ("S", self._scope, region, state.version, query)
        services: list[Service] | None = self._selection(selection_key)
        if services is None:
            services = self._fleet.list_services(region, query)
            self._keep(selection_key, services)
        lo, hi = _window(len(services), page_number, size, descending=False)
        payload = orjson.dumps(
            {
                "Services": [s.render_service() for s in services[lo:hi]],
                "PageNumber": page_number,
                "PageSize": size,
                "TotalCount": len(services),
            }
        )
        self._cache.put(key, payload)
        return payload

    # --- ListServiceInstances -----------------------------------------------------------------------

    def instances(self, region: str, cluster_id: str, service_name: str, raw_query: str) -> bytes:
        """The ListServiceInstances payload. ``ConfigError`` for a bad parameter (or a ClusterId
        that is not this endpoint's region), ``ServiceNotFound`` for an unknown service."""
        page = self._instance_page(raw_query)
        if cluster_id != region:
            raise ConfigError(f"ClusterId {cluster_id!r} is not the region of this endpoint ({region})")
        service = self._fleet.service(region, service_name)
        if service is None:
            raise ServiceNotFound(f"The service {service_name!r} does not exist in {region}.")
        key = ("I", self._scope, region, service.service_id, service.version, page)
        payload = self._cache.get(key)
        if payload is not None:
            return payload
        filters, descending, page_number, size = page
        if filters.is_empty():
            total = service.live_count
            lo, hi = _window(total, page_number, size, descending)
            indexes = service.live_indexes(lo, hi)
        else:
            selection_key = ("I", self._scope, region, service.service_id, service.version, filters)
            selected: list[int] | None = self._selection(selection_key)
            if selected is None:
                selected = [
                    i for i in service.live_indexes() if instance_matches(service.render_instance(i), filters)
                ]
                self._keep(selection_key, selected)
            total = len(selected)
            lo, hi = _window(total, page_number, size, descending)
            indexes = selected[lo:hi]
        if descending:
            indexes.reverse()
        payload = (
            f'{{"Instances":{service.instances_json(indexes)},'
            f'"PageNumber":{page_number},"PageSize":{size},"TotalCount":{total}}}'
        ).encode()
        self._cache.put(key, payload)
        return payload

    # --- warming ------------------------------------------------------------------------------------

    def prewarm(self, page_size: int = MAX_PAGE_SIZE) -> int:
        """Render the default-order pages of every region's service list and every live service's
        instances into the cache, until it is full; return how many pages were rendered.

        These are the pages a scan asks for (``Sort=StartTime&Order=asc`` or no sort, any
        ``PageNumber``, this ``PageSize``), so a benchmark can measure the client, not rendering.
        """
        rendered = 0
        cache = self._cache
        for region, state in self._fleet.regions.items():
            jobs: list[tuple[str | None, int]] = [(None, len(state.by_name))]
            jobs += [(service.name, service.live_count) for service in state.by_name.values()]
            for service_name, count in jobs:
                for number in range(1, page_count(count, page_size) + 1):
                    raw_query = canonical_query({"PageNumber": str(number), "PageSize": str(page_size)})
                    if service_name is None:
                        payload = self.services(region, raw_query)
                    else:
                        payload = self.instances(region, region, service_name, raw_query)
                    rendered += 1
                    if cache.bytes + len(payload) > cache.max_bytes:
                        return rendered
        return rendered
