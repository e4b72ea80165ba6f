"""Server-side counters: what the simulator was asked and what it answered.

``Counters`` is mutated on the request path (plain dict and int updates, no locks: one event
loop); ``snapshot()`` returns a frozen ``CountersSnapshot`` for tests and benchmarks, and
``CountersSnapshot.to_dict()`` is what ``GET /_simulator/counters`` sends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["Counters", "CountersSnapshot"]


def _freeze2(data: Mapping[str, Mapping[str, int]]) -> Mapping[str, Mapping[str, int]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in sorted(data.items())})


def _freeze(data: Mapping[Any, int]) -> Mapping[Any, int]:
    return MappingProxyType(dict(sorted(data.items())))


@dataclass(frozen=True, slots=True)
class CountersSnapshot:
    """A read-only view of the counters at one moment.

    - ``requests[region][action]``: EAS API requests received (admin routes excluded; an unknown
      route counts as action ``"Unknown"``), including those then refused or faulted.
    - ``responses[status]``, ``errors[code]``: what was answered (reset connections not included).
    - ``throttled[region][action]``: requests refused by the rate limit.
    - ``faults[kind]``: faults injected (see ``FaultKind``), throttling and Forbidden included.
    - ``peak_concurrency`` (and ``_by_region``): most requests in progress at once.
    - ``peak_rate[region][action]``: most requests started within one clock second.
    - ``bytes_sent`` (and ``_by_region``): response body bytes written.
    - ``page_cache_*``: hits and misses of the rendered-page cache, its size now.
    - ``churn[kind]``: churn events applied so far (``ChurnRates`` field names).
    """

    requests: Mapping[str, Mapping[str, int]]
    total_requests: int
    responses: Mapping[int, int]
    errors: Mapping[str, int]
    throttled: Mapping[str, Mapping[str, int]]
    throttled_total: int
    faults: Mapping[str, int]
    in_flight: int
    peak_concurrency: int
    peak_concurrency_by_region: Mapping[str, int]
    peak_rate: Mapping[str, Mapping[str, int]]
    bytes_sent: int
    bytes_sent_by_region: Mapping[str, int]
    page_cache_hits: int
    page_cache_misses: int
    page_cache_bytes: int
    page_cache_entries: int
    churn: Mapping[str, int]

    def requests_for(self, action: str, region: str | None = None) -> int:
        """Requests of one action, in one region or all."""
        regions = [region] if region is not None else list(self.requests)
        return sum(self.requests.get(r, {}).get(action, 0) for r in regions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {k: dict(v) for k, v in self.requests.items()},
            "total_requests": self.total_requests,
            "responses": {str(k): v for k, v in self.responses.items()},
            "errors": dict(self.errors),
            "throttled": {k: dict(v) for k, v in self.throttled.items()},
            "throttled_total": self.throttled_total,
            # Keyed by FaultKind, a StrEnum, which orjson refuses as a key: plain strings here.
            "faults": {str(k): v for k, v in self.faults.items()},
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "peak_concurrency_by_region": dict(self.peak_concurrency_by_region),
            "peak_rate": {k: dict(v) for k, v in self.peak_rate.items()},
            "bytes_sent": self.bytes_sent,
            "bytes_sent_by_region": dict(self.bytes_sent_by_region),
            "page_cache_hits": self.page_cache_hits,
            "page_cache_misses": self.page_cache_misses,
            "page_cache_bytes": self.page_cache_bytes,
            "page_cache_entries": self.page_cache_entries,
            "churn": dict(self.churn),
        }


class Counters:
    """The live counters. ``now`` is the clock the per-second rates are measured on."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.reset()

    def reset(self) -> None:
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.responses: defaultdict[int, int] = defaultdict(int)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.throttled: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.faults: defaultdict[str, int] = defaultdict(int)
        self.in_flight = 0
        self.in_flight_by_region: defaultdict[str, int] = defaultdict(int)
        self.peak_concurrency = 0
        self.peak_concurrency_by_region: defaultdict[str, int] = defaultdict(int)
        # (region, action) -> [second, requests in that second]
        self._current_second: dict[tuple[str, str], list[int]] = {}
        self.peak_rate: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.bytes_sent_by_region: defaultdict[str, int] = defaultdict(int)

    def begin(self, region: str, action: str) -> None:
        """A request arrived (call ``end`` when it is answered)."""
        self.requests[region][action] += 1
        self.in_flight += 1
        if self.in_flight > self.peak_concurrency:
            self.peak_concurrency = self.in_flight
        in_region = self.in_flight_by_region[region] + 1
        self.in_flight_by_region[region] = in_region
        if in_region > self.peak_concurrency_by_region[region]:
            self.peak_concurrency_by_region[region] = in_region
        second = int(self._now())
        slot = self._current_second.get((region, action))
        if slot is None or slot[0] != second:
            slot = self._current_second[(region, action)] = [second, 0]
        slot[1] += 1
        peaks = self.peak_rate[region]
        if slot[1] > peaks[action]:
            peaks[action] = slot[1]

    def end(self, region: str) -> None:
        self.in_flight -= 1
        self.in_flight_by_region[region] -= 1

    def sent(self, region: str, status: int | None, code: str | None, nbytes: int) -> None:
        """A response (``status`` None: the connection was reset mid-body) of ``nbytes`` body bytes."""
        if status is not None:
            self.responses[status] += 1
        if code is not None:
            self.errors[code] += 1
        self.bytes_sent_by_region[region] += nbytes

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def throttle(self, region: str, action: str) -> None:
        self.throttled[region][action] += 1

    def snapshot(
        self,
        *,
        cache_hits: int,
        cache_misses: int,
        cache_bytes: int,
        cache_entries: int,
        churn: Mapping[str, int],
    ) -> CountersSnapshot:
        return CountersSnapshot(
            requests=_freeze2(self.requests),
            total_requests=sum(sum(v.values()) for v in self.requests.values()),
            responses=_freeze(self.responses),
            errors=_freeze(self.errors),
            throttled=_freeze2(self.throttled),
            throttled_total=sum(sum(v.values()) for v in self.throttled.values()),
            faults=_freeze(self.faults),
            in_flight=self.in_flight,
            peak_concurrency=self.peak_concurrency,
            peak_concurrency_by_region=_freeze(self.peak_concurrency_by_region),
            peak_rate=_freeze2(self.peak_rate),
            bytes_sent=sum(self.bytes_sent_by_region.values()),
            bytes_sent_by_region=_freeze(self.bytes_sent_by_region),
            page_cache_hits=cache_hits,
            page_cache_misses=cache_misses,
            page_cache_bytes=cache_bytes,
            page_cache_entries=cache_entries,
            churn=MappingProxyType(dict(churn)),
        )
