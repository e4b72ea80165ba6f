"""Adaptive rate limiting per (region, action), shared by every task of a scan.

Each scope has one ``AdaptiveRateLimiter``. It goes through three phases:

- **Slow start** (no ceiling configured, nothing throttled yet): requests go out in rounds, as
  TCP's slow start sends windows. The first round is ``slow_start_window`` requests; the next
  round waits until every request of the one before has been answered, and is twice as large.
  A round answered without a throttle doubles the window until it reaches
  ``slow_start_max_window``, and from then on the scope is not limited at all. An unlimited API
  thus costs a couple of round trips at the start of each scope; a rate-limited one sees at most
  one round's excess over its burst throttled, instead of every task of the region at once.
- **Ramp**: a throttle when what got through was only a burst (less than half a second of
  sending: the scope's first, or its first after a pause) says the burst is spent, nothing about
  the rate: the rate starts from what got through and doubles every ``ramp_doubling_seconds``
  until the next throttle. The first paced request waits one interval: the bucket is empty.
- **CUBIC**, as botocore's adaptive mode (``botocore/retries/throttling.py``): a throttle cuts
  the rate to ``beta`` times what got through (in the last second, or since the previous cut if
  more: the server's limit as measured, not the rate that was being sent), remembered as
  ``w_max``; successes grow it again along ``scale * (t - K)**3 + w_max``, flat near ``w_max``
  and probing beyond. The throttle that ends a ramp knows less (the ramp overshot, and spent
  part of the second below): the rate drops to ``beta`` times the geometric mean of the rate
  sent and the rate that got through, and the curve rises from there toward the overshoot, so
  the next throttle, at a steadier rate, measures the limit instead of leaving a plateau at a
  guess.

Pacing is GCRA: the next send slot is due one interval after the last. Waiters queue on a FIFO
lock and only the head books a slot, at the rate of that moment, so a changed rate takes effect
at once instead of after a queue of slots booked at the old rate. One sleep per request, never
a thundering herd; with no limit in force there is no queue at all.

Unlike botocore, the limiter is shared by every task of the scope, and a throttle cuts the rate
only if its request was sent after the previous cut (plus ``cooldown_seconds``): the answers to
requests already in flight at the old rate say nothing new (TCP's one-decrease-per-window rule);
a throttle of a request sent since the cut, within the cooldown, stops growth until it ends.
``x-acs-retry-after`` pauses the whole scope for the time the server asked, at most
``MAX_RETRY_AFTER_S`` (60 s).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio

from scanner.clock import Clock
from scanner.engine.config import RateLimit, retry_after_seconds

__all__ = ["AdaptiveRateLimiter", "CubicCurve", "RateLimiterState", "RateLimiters", "SendRateMeter"]

#: A grown rate may not exceed this many times the rate actually sent (botocore's cap), so the
#: limit does not balloon while something else (concurrency, latency) is what holds us back.
_MAX_GROWTH_OVER_MEASURED = 2.0

#: The span over which sends and successes are counted, in seconds.
_METER_WINDOW = 1.0

#: In slow start, a request is given up on (as failed unreported) after this many times the
#: slowest answer yet, but not under the floor, in seconds.
_OVERDUE_FACTOR = 4.0
_OVERDUE_FLOOR = 0.05


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

    def cut(self, rate: float, at: float, *, to: float | None = None) -> float:
        """A throttle at ``rate``: remember it as ``w_max`` and return the decreased rate.

        ``to`` decreases to that rate instead of ``beta * rate``, the curve rising from it.
        """
        self.w_max = rate
        self._last_cut = at
        if to is None:
            self._k = self._zero_point()
            return rate * self._beta
        self._k = float(math.cbrt(max(0.0, rate - to) / self._scale))
        return to


class SendRateMeter:
    """Events per second over the last ``window`` seconds."""

    __slots__ = ("_times", "_window")

    def __init__(self, window: float = _METER_WINDOW) -> None:
        self._window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        times = self._times
        times.append(now)
        horizon = now - self._window
        while times[0] < horizon:
            times.popleft()

    def count(self, now: float) -> int:
        """Events in the last ``window`` seconds."""
        times = self._times
        horizon = now - self._window
        while times and times[0] < horizon:
            times.popleft()
        return len(times)

    def span(self, now: float) -> float:
        """Seconds from the oldest event in the window to ``now`` (0.0: none)."""
        return now - self._times[0] if self.count(now) else 0.0

    def rate(self, now: float) -> float:
        count = self.count(now)
        if not count:
            return 0.0
        # A young window is divided by its true span (but not by ~0), else by the window.
        span = now - self._times[0]
        if span < self._window:
            return count / max(span, self._window / 20)
        return count / self._window


@dataclass(frozen=True, slots=True)
class RateLimiterState:
    """A read-only snapshot of one scope's limiter."""

    rate: float | None  # requests/s now being allowed; None: not paced (yet)
    window: int | None  # slow start's current round size; None: no window
    w_max: float | None
    throttles: int
    cuts: int
    sent: int


class AdaptiveRateLimiter:
    """Paces one (region, action) scope. ``acquire`` before each request; report each outcome.

    A request that fails otherwise than by a throttle should be reported with ``on_error``; one
    that is not (or is cancelled) leaves slow start, which counts answers, waiting: it gives up
    its window if a round waits ``slow_start_timeout`` for answers that never come.
    """

    def __init__(self, config: RateLimit, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._ceiling = config.requests_per_second
        # None: not paced. Set from the start when a ceiling is configured.
        self._rate: float | None = config.requests_per_second
        self._next_slot = -math.inf  # GCRA theoretical arrival time of the next request
        self._paused_until = -math.inf
        self._meter = SendRateMeter()
        self._successes = SendRateMeter()
        self._cubic: CubicCurve | None = None
        self._ramp_from: tuple[float, float] | None = None  # (rate, since) while ramping
        self._queue = anyio.Lock()
        self._last_cut = -math.inf
        self._since_cut = 0  # successes since the last cut
        self._frozen_until = -math.inf  # no growth before then
        # Slow start: a round may send up to ``_round_budget`` requests in all; it ends when
        # every request sent has been answered.
        adaptive_start = config.adaptive and self._rate is None
        self._window: int | None = config.slow_start_window if adaptive_start else None
        self._round_budget = self._window or 0
        self._answered = 0
        self._answer: anyio.Event | None = None
        self._slowest_answer: float | None = None  # seconds, in slow start
        self.throttles = 0
        self.cuts = 0
        self.sent = 0

    @property
    def rate(self) -> float | None:
        return self._rate

    @property
    def window(self) -> int | None:
        return self._window

    def window_open(self) -> bool:
        """Whether slow start lets a request go now, without waiting for answers."""
        return self._window is None or self.sent < self._round_budget

    def reserve(self) -> tuple[float, float]:
        """Book the next send slot: ``(delay before sending, send time)``. Never blocks.

        Does not look at slow start's window: ask ``window_open`` first.
        """
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
        if self._rate is None and self._paused_until <= self._clock.monotonic() and self.window_open():
            return self.reserve()[1]
        async with self._queue:
            while not self.window_open():
                await self._wait_for_answers()
            delay, send_at = self.reserve()
            if delay > 0:
                await self._clock.sleep(delay)
        return send_at

    async def _wait_for_answers(self) -> None:
        answer = self._answer
        if answer is None:
            answer = self._answer = anyio.Event()
        # A request that failed unreported never answers; the round would wait for it forever.
        # Once answers have come, one is overdue at a few times the slowest of them.
        timeout = self._config.slow_start_timeout
        if self._slowest_answer is not None:
            timeout = min(timeout, max(_OVERDUE_FACTOR * self._slowest_answer, _OVERDUE_FLOOR))
        # Loop time, not the injected clock: this is a safety net, not pacing; a fake clock's
        # sleep would fire it at once.
        with anyio.move_on_after(timeout) as waited:
            await answer.wait()
        if waited.cancelled_caught:
            self._end_slow_start()

    def _answered_one(self) -> None:
        if self._window is None:
            return
        self._answered += 1
        if self._answered >= self.sent:  # the round is over, and nothing in it was throttled
            window = self._window * 2
            if window >= self._config.slow_start_max_window:
                self._end_slow_start()
            else:
                self._window = window
                self._round_budget = self.sent + window
        if self._answer is not None:
            self._answer.set()
            self._answer = None

    def _end_slow_start(self) -> None:
        self._window = None
        if self._answer is not None:
            self._answer.set()
            self._answer = None

    def on_success(self, sent_at: float) -> None:
        if not self._config.adaptive:
            return
        now = self._clock.monotonic()
        self._successes.record(now)
        self._since_cut += 1
        if self._window is not None:
            took = now - sent_at
            if self._slowest_answer is None or took > self._slowest_answer:
                self._slowest_answer = took
        self._answered_one()
        if now < self._frozen_until:
            return
        if self._ramp_from is not None:
            start_rate, since = self._ramp_from
            grown = start_rate * 2.0 ** ((now - since) / self._config.ramp_doubling_seconds)
        elif self._cubic is not None:
            grown = self._cubic.rate_at(now)
        else:
            return
        measured = self._meter.rate(now)
        if measured > 0:
            grown = min(grown, _MAX_GROWTH_OVER_MEASURED * measured)
        self._set_rate(grown)

    def on_error(self, sent_at: float) -> None:
        """A request failed otherwise than by a throttle: answered, but says nothing of the rate."""
        if self._config.adaptive:
            self._answered_one()

    def on_throttle(self, sent_at: float, retry_after_ms: int | None = None) -> None:
        self.throttles += 1
        now = self._clock.monotonic()
        if retry_after_ms is not None and retry_after_ms > 0:
            self._paused_until = max(self._paused_until, now + retry_after_seconds(retry_after_ms))
        if not self._config.adaptive:
            return
        self._end_slow_start()
        cooled = self._last_cut + self._config.cooldown_seconds
        if sent_at < cooled:
            if sent_at >= self._last_cut:
                # Sent at the rate of the last cut and still throttled: no growth until the
                # cooldown lets a throttle cut again.
                self._frozen_until = cooled
                if self._ramp_from is not None:
                    self._ramp_from = (self._rate or self._config.min_rate, cooled)
            return
        # What the server let through is the best estimate of its limit: in the last second, or
        # since the previous cut if more (a throttle says its bucket is empty, so what got through
        # between two of them is what it refilled; the last second alone may be mostly a ramp).
        succeeded = self._successes.count(now) / _METER_WINDOW
        since_cut = self._since_cut / (now - self._last_cut) if self.cuts else 0.0
        if self._ramp_from is not None:
            # The last second holds the burst that ended slow start: count from its cut.
            succeeded = since_cut
        elif now - self._last_cut >= _METER_WINDOW:
            succeeded = max(succeeded, since_cut)
        unpaced = self._rate is None
        if self._meter.span(now) < _METER_WINDOW / 2:
            # What got through was a burst (the scope's first, or its first after a pause): the
            # server's burst allowance, which says nothing of its rate. Start from it and ramp
            # up until the next throttle tells.
            start_rate = max(succeeded, self._config.min_rate)
            self._ramp_from = (start_rate, now)
            self._set_rate(start_rate)
        else:
            sending = self._meter.rate(now) if self._rate is None else self._rate
            current = min(sending, succeeded) if succeeded > 0 else sending * self._config.beta
            current = max(current, self._config.min_rate)
            to = None
            if self._ramp_from is not None:
                # The end of a ramp: between an overshoot and an undershoot (module docstring).
                to = self._config.beta * math.sqrt(sending * current)
                current = sending
            self._ramp_from = None
            if self._cubic is None:
                self._cubic = CubicCurve(
                    w_max=current, at=now, scale=self._config.scale, beta=self._config.beta
                )
            self._set_rate(self._cubic.cut(current, now, to=to))
        if unpaced and self._rate is not None:
            # The server's bucket is empty: the first paced request waits one interval.
            self._next_slot = now + 1.0 / self._rate + self._config.burst_seconds
        self._last_cut = now
        self._since_cut = 0
        self.cuts += 1

    def _set_rate(self, rate: float) -> None:
        rate = max(self._config.min_rate, rate)
        if self._ceiling is not None:
            rate = min(self._ceiling, rate)
        self._rate = rate

    def snapshot(self) -> RateLimiterState:
        return RateLimiterState(
            rate=self._rate,
            window=self._window,
            w_max=self._cubic.w_max if self._cubic is not None else None,
            throttles=self.throttles,
            cuts=self.cuts,
            sent=self.sent,
        )

    def __repr__(self) -> str:
        if self._rate is not None:
            pace = f"{self._rate:.1f}/s"
        elif self._window is not None:
            pace = f"slow start, window {self._window}"
        else:
            pace = "unlimited"
        return f"AdaptiveRateLimiter({pace}, throttles={self.throttles}, cuts={self.cuts})"


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
