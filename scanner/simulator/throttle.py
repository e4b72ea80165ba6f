"""The simulator's server-side throttle: an admission bucket per (region, action), on an injected clock.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens a second; a request takes
one token or is refused, and is told how long until one will be there (for ``x-acs-retry-after``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["AdmissionBucket", "ServerThrottle"]


class AdmissionBucket:
    """A token bucket that admits a request or says how long until it would."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there will be one."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class ServerThrottle:
    """One ``AdmissionBucket`` per key, all with the same rate and burst; disabled when rate is None."""

    __slots__ = ("_buckets", "_now", "burst", "rate")

    def __init__(self, now: Callable[[], float], rate: float | None = None, burst: int = 1) -> None:
        self._now = now
        self._buckets: dict[tuple[str, str], AdmissionBucket] = {}
        self.rate = rate
        self.burst = burst
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int) -> None:
        """Change the limit; buckets start again full."""
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 or None, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._buckets.clear()

    def take(self, key: tuple[str, str]) -> float:
        """0.0 if the request may go ahead, else the seconds until it could."""
        if self.rate is None:
            return 0.0
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = AdmissionBucket(self.rate, self.burst, now)
        return bucket.take(now)
