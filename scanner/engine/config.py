"""The scan engine's knobs, as small frozen value objects with validated fields and sane defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from scanner.eas.params import MAX_PAGE_SIZE
from scanner.errors import ConfigError

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Concurrency",
    "Consistency",
    "RateLimit",
    "RetryPolicy",
    "retry_after_seconds",
]

#: The longest a server's ``x-acs-retry-after`` hint is obeyed, in seconds: both in the rate
#: limiter's pause of a (region, action) and in a retry's wait. A longer hint (an hour has been
#: seen) is taken as this, so one answer cannot stall a region for longer than a minute.
MAX_RETRY_AFTER_S: Final = 60.0


def retry_after_seconds(retry_after_ms: int) -> float:
    """A server's retry-after hint in seconds, capped at ``MAX_RETRY_AFTER_S``."""
    if retry_after_ms >= MAX_RETRY_AFTER_S * 1000:  # compared as an int: 10**400 / 1000 overflows
        return MAX_RETRY_AFTER_S
    return retry_after_ms / 1000


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Concurrency:
    """How many requests may be in flight at once.

    ``total`` bounds the whole scan; ``per_region`` bounds one region, so a slow or throttled region
    cannot take every slot; ``pages_per_listing`` bounds how many pages of one listing are fetched
    at once, so one huge service cannot starve the others in its region; ``services_per_region``
    bounds how many service listings of a region are open at once (each holds its dedup keys).
    ``long_listings_per_region`` bounds how many of those may be long listings: more pages (by
    ListServices' count) than one batch of ``pages_per_listing`` plus its first page. A long
    listing holds thousands of names until it ends; without the bound a fleet of big services
    keeps every worker on a half-read big listing, and memory grows with the fleet instead of
    staying flat. ``long_listings`` bounds them across all regions, so memory does not grow with
    the number of regions either. Shorter listings are read in one batch and need no such bound.
    """

    total: int = 64
    per_region: int = 32
    pages_per_listing: int = 8
    services_per_region: int = 32
    long_listings_per_region: int = 8
    long_listings: int = 32

    def __post_init__(self) -> None:
        _positive("Concurrency.total", self.total, integer=True)
        _positive("Concurrency.per_region", self.per_region, integer=True)
        _positive("Concurrency.pages_per_listing", self.pages_per_listing, integer=True)
        _positive("Concurrency.services_per_region", self.services_per_region, integer=True)
        _positive("Concurrency.long_listings_per_region", self.long_listings_per_region, integer=True)
        _positive("Concurrency.long_listings", self.long_listings, integer=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """Requests per second, per (region, action), shared by every task of a scan.

    ``requests_per_second=None`` means no fixed ceiling: slow start, then full speed until the API
    first throttles, then adaptive. With ``adaptive`` on, a throttle cuts the rate and it then
    probes back up (CUBIC, as botocore's adaptive retry mode does); the phases are described in
    ``scanner.engine.rate_control``. ``x-acs-retry-after`` pauses the whole scope, for at most
    ``MAX_RETRY_AFTER_S`` (60 s).
    """

    requests_per_second: float | None = None
    adaptive: bool = True
    min_rate: float = 0.5
    #: Multiplicative decrease on a throttle (botocore uses 0.7).
    beta: float = 0.7
    #: CUBIC scale constant: how fast the rate probes back up (botocore: 0.4).
    scale: float = 0.4
    #: Burst tolerance, in seconds of the current rate.
    burst_seconds: float = 0.05
    #: After a cut, throttles of requests sent within this many seconds do not cut again: the
    #: server is still working off the earlier excess, and cutting again would collapse the rate.
    cooldown_seconds: float = 0.5
    #: Slow start, before the first throttle: the first round of requests of a scope, before any
    #: answer; each round answered without a throttle doubles it, up to the max, beyond which
    #: the scope is not limited. A round left unanswered this many seconds ends slow start
    #: (once answers have come, four times the slowest of them, if less). Only a request never
    #: reported (cancelled) needs it; a loaded server (an organisation's scopes all starting at
    #: once) may take seconds to answer a first round, and a round given up on too soon sends a
    #: second one into the same empty bucket.
    slow_start_window: int = 8
    slow_start_max_window: int = 32
    slow_start_timeout: float = 10.0
    #: After a throttle in a scope's first second, the rate doubles this often until the next.
    ramp_doubling_seconds: float = 0.35

    def __post_init__(self) -> None:
        if self.requests_per_second is not None:
            _positive("RateLimit.requests_per_second", self.requests_per_second)
        _positive("RateLimit.min_rate", self.min_rate)
        if not 0 < self.beta < 1:
            raise ConfigError(f"RateLimit.beta must be between 0 and 1, got {self.beta!r}")
        _positive("RateLimit.scale", self.scale)
        _positive("RateLimit.burst_seconds", self.burst_seconds)
        _positive("RateLimit.cooldown_seconds", self.cooldown_seconds)
        _positive("RateLimit.slow_start_window", self.slow_start_window, integer=True)
        _positive("RateLimit.slow_start_max_window", self.slow_start_max_window, integer=True)
        _positive("RateLimit.slow_start_timeout", self.slow_start_timeout)
        _positive("RateLimit.ramp_doubling_seconds", self.ramp_doubling_seconds)
        if not self.adaptive and self.requests_per_second is None:
            raise ConfigError("RateLimit(adaptive=False) needs requests_per_second")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Per-request retries: exponential backoff with full jitter, capped, with a per-region budget.

    The n-th retry waits ``uniform(0, min(max_delay, base_delay * 2**(n-1)))`` seconds, or the
    server's ``x-acs-retry-after`` if longer (capped at ``max_retry_after``, which may lower, never
    raise, the ``MAX_RETRY_AFTER_S`` cap of 60 s). Every retry spends
    from its region's budget (``budget`` tokens; ``retry_cost`` per retry, ``timeout_cost`` after a
    timeout, ``throttle_cost`` after a throttle); successes refund it. An empty budget stops
    retries in that region, so a region in meltdown cannot spin forever (botocore's retry quota).
    """

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 20.0
    max_retry_after: float = MAX_RETRY_AFTER_S
    budget: int = 500
    retry_cost: int = 5
    timeout_cost: int = 10
    throttle_cost: int = 1
    success_refund: int = 1

    def __post_init__(self) -> None:
        _positive("RetryPolicy.max_attempts", self.max_attempts, integer=True)
        _positive("RetryPolicy.base_delay", self.base_delay)
        _positive("RetryPolicy.max_delay", self.max_delay)
        _positive("RetryPolicy.max_retry_after", self.max_retry_after)
        if self.max_retry_after > MAX_RETRY_AFTER_S:
            raise ConfigError(
                f"RetryPolicy.max_retry_after must be at most {MAX_RETRY_AFTER_S:g} s, "
                f"got {self.max_retry_after!r}"
            )
        for name in ("budget", "retry_cost", "timeout_cost", "throttle_cost", "success_refund"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"RetryPolicy.{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Consistency:
    """How listings that change while they are read are handled.

    ``page_size`` is what is asked for (the API caps it at 100). A listing whose TotalCount changes
    between its pages, or whose pages do not add up, is read again, newest page first, up to
    ``max_passes`` passes in all.
    """

    page_size: int = MAX_PAGE_SIZE
    max_passes: int = 3

    def __post_init__(self) -> None:
        _positive("page_size", self.page_size, integer=True)
        if self.page_size > MAX_PAGE_SIZE:
            raise ConfigError(
                f"page_size must be at most {MAX_PAGE_SIZE} (the API's cap), got {self.page_size}"
            )
        _positive("Consistency.max_passes", self.max_passes, integer=True)
