"""Adaptive rate limiting per (region, action), shared by every task of a scan.

Each scope has one ``AdaptiveRateLimiter``:

- **Pacing** is GCRA: the next send slot is due one interval after the last. Waiters queue on a
  FIFO lock and only the head books a slot, at the rate of that moment, so a changed rate takes
  effect at once instead of after a queue of slots booked at the old rate. One sleep per
  request, never a thundering herd; with no limit in force there is no queue at all.
- **Adaptation** follows botocore's adaptive mode (CUBIC, ``botocore/retries/throttling.py``):
  with no ceiling configured it runs at full speed until the API first throttles. A throttle cuts
  the rate to ``beta`` times the rate that was being sent, remembered as ``w_max``; successes then
  grow it again along ``scale * (t - K)**3 + w_max``, flat near ``w_max`` and probing beyond.
- Unlike botocore, the limiter is shared by every task of the scope, and a throttle cuts the rate
  only if its request was sent after the previous cut: the answers to requests already in flight
  at the old rate say nothing new (TCP's one-decrease-per-window rule). Without that, a burst of
  throttles collapses the rate to the floor.
- ``x-acs-retry-after`` pauses the whole scope for the time the server asked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio

from scanner.clock import Clock
from scanner.engine.config import RateLimit

__all__ = ["AdaptiveRateLimiter", "CubicCurve", "RateLimiterState", "RateLimiters", "SendRateMeter"]

#: A grown rate may not exceed this many times the rate actually sent (botocore's cap), so the
#: limit does not balloon while something else (concurrency, latency) is what holds us back.
_MAX_GROWTH_OVER_MEASURED = 2.0


class CubicCurve:
    """CUBIC window growth, in requests per second. Pure: time is passed in."""

    __slots__ = ("_beta", "_k", "_last_cut", "_scale", "w_max")

    def __init__(self, *, w_max: float, at: float, scale: float, beta: float) -> None:
        self._scale = scale
        self._beta = beta
        self.w_max = w_max
        self._last_cut = at
        self._k = self._zero_point()

    def _zero_point(self) -> float:
        return float(math.cbrt(self.w_max * (1 - self._beta) / self._scale))

    def rate_at(self, now: float) -> float:
        return self._scale * (now - self._last_cut - self._k) ** 3 + self.w_max

    def cut(self, rate: float, at: float) -> float:
        """A throttle at ``rate``: remember it as ``w_max`` and return the decreased rate."""
        self.w_max = rate
        self._last_cut = at
        self._k = self._zero_point()
        return rate * self._beta


class SendRateMeter:
    """Requests sent per second over the last ``window`` seconds."""

    __slots__ = ("_times", "_window")

    def __init__(self, window: float = 1.0) -> None:
        self._window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        times = self._times
        times.append(now)
        horizon = now - self._window
        while times[0] < horizon:
            times.popleft()

    def rate(self, now: float) -> float:
        times = self._times
        horizon = now - self._window
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            return 0.0
        # A young window is divided by its true span (but not by ~0), else by the window.
        span = now - times[0]
        if span < self._window:
            return len(times) / max(span, self._window / 20)
        return len(times) / self._window


@dataclass(frozen=True, slots=True)
class RateLimiterState:
    """A read-only snapshot of one scope's limiter."""

    rate: float | None  # requests/s now being allowed; None: not limited (yet)
    w_max: float | None
    throttles: int
    cuts: int
    sent: int


class AdaptiveRateLimiter:
    """Paces one (region, action) scope. ``acquire`` before each request; report each outcome."""

    def __init__(self, config: RateLimit, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._ceiling = config.requests_per_second
        # None: not limited. Set from the start when a ceiling is configured.
        self._rate: float | None = config.requests_per_second
        self._next_slot = -math.inf  # GCRA theoretical arrival time of the next request
        self._paused_until = -math.inf
        self._meter = SendRateMeter()
        self._successes = SendRateMeter()
        self._cubic: CubicCurve | None = None
        self._queue = anyio.Lock()
        self._last_cut = -math.inf
        self.throttles = 0
        self.cuts = 0
        self.sent = 0

    @property
    def rate(self) -> float | None:
        return self._rate

    def reserve(self) -> tuple[float, float]:
        """Book the next send slot: ``(delay before sending, send time)``. Never blocks."""
        now = self._clock.monotonic()
        start = max(now, self._paused_until)
        rate = self._rate
        if rate is None:
            send_at = start
        else:
            due = max(self._next_slot, start)
            send_at = max(start, due - self._config.burst_seconds)
            self._next_slot = due + 1.0 / rate
        self._meter.record(send_at)
        self.sent += 1
        return send_at - now, send_at

    async def acquire(self) -> float:
        """Wait for this scope's next send slot. Returns the send time, to pass to ``on_*``."""
        if self._rate is None and self._paused_until <= self._clock.monotonic():
            return self.reserve()[1]
        async with self._queue:
            delay, send_at = self.reserve()
            if delay > 0:
                await self._clock.sleep(delay)
        return send_at

    def on_success(self, sent_at: float) -> None:
        if not self._config.adaptive:
            return
        now = self._clock.monotonic()
        self._successes.record(now)
        if self._cubic is None:
            return
        grown = self._cubic.rate_at(now)
        measured = self._meter.rate(now)
        if measured > 0:
            grown = min(grown, _MAX_GROWTH_OVER_MEASURED * measured)
        self._set_rate(grown)

    def on_throttle(self, sent_at: float, retry_after_ms: int | None = None) -> None:
        self.throttles += 1
        now = self._clock.monotonic()
        if retry_after_ms is not None and retry_after_ms > 0:
            self._paused_until = max(self._paused_until, now + retry_after_ms / 1000)
        if not self._config.adaptive or sent_at < self._last_cut + self._config.cooldown_seconds:
            return
        # What the server let through lately is the best estimate of its limit; if nothing got
        # through, back off from what was being sent.
        sending = self._meter.rate(now) if self._rate is None else self._rate
        succeeding = self._successes.rate(now)
        current = min(sending, succeeding) if succeeding > 0 else sending * self._config.beta
        current = max(current, self._config.min_rate)
        if self._cubic is None:
            self._cubic = CubicCurve(w_max=current, at=now, scale=self._config.scale, beta=self._config.beta)
        self._set_rate(self._cubic.cut(current, now))
        self._last_cut = now
        self.cuts += 1

    def _set_rate(self, rate: float) -> None:
        rate = max(self._config.min_rate, rate)
        if self._ceiling is not None:
            rate = min(self._ceiling, rate)
        self._rate = rate

    def snapshot(self) -> RateLimiterState:
        return RateLimiterState(
            rate=self._rate,
            w_max=self._cubic.w_max if self._cubic is not None else None,
            throttles=self.throttles,
            cuts=self.cuts,
            sent=self.sent,
        )

    def __repr__(self) -> str:
        rate = "unlimited" if self._rate is None else f"{self._rate:.1f}/s"
        return f"AdaptiveRateLimiter({rate}, throttles={self.throttles}, cuts={self.cuts})"


class RateLimiters:
    """The limiters of a scan, one per (region, action), created on first use."""

    def __init__(self, config: RateLimit, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._limiters: dict[tuple[str, str], AdaptiveRateLimiter] = {}

    def get(self, region: str, action: str) -> AdaptiveRateLimiter:
        key = (region, action)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AdaptiveRateLimiter(self._config, self._clock)
        return limiter

    def snapshot(self) -> dict[tuple[str, str], RateLimiterState]:
        return {key: limiter.snapshot() for key, limiter in self._limiters.items()}
