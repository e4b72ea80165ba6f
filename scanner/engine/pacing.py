"""Client-side pacing per (region, action), shared by every task of a scan.

Three parts, as botocore separates ``CubicCalculator``, ``TokenBucket`` and ``ClientRateLimiter``:

- ``RateController`` (``engine/rate_control.py``) decides the rate and the phase from events;
  it is pure.
- ``Pacer`` waits: GCRA, a token bucket of ``burst_seconds`` of the current rate kept as the
  time the last send was due, on the injected clock. Waiters queue on a FIFO lock and only the
  head books a slot, one interval at the rate of that moment after the last, so a changed rate
  applies at once instead of after slots booked at the old rate: one sleep per request, never
  a thundering herd.
- ``ClientRateLimiter`` wires the two for one scope; ``ClientRateLimiters`` holds one per
  (region, action), created on first use.
- ``PeerRates``: in a scan of several accounts, each account has its own ``ClientRateLimiters``
  (scopes are (account, region, action)), and an API's limit is typically the same for every
  account. The registries that ``join`` one ``PeerRates`` tell it what their scopes learned (the
  limit measured at a cut, what got through when a ramp ended, the burst a first round got
  through); a scope created once enough peers have learned starts from their median instead of
  slow start (``RateController.start_from``), its first ``burst`` requests sent at once, as a
  fresh server bucket allows, and a scope still ramping from its own burst moves to it at its
  next answer (``RateController.follow``).

With no rate in force and no pause, ``acquire`` reads a few attributes and returns: no queue,
no await.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

import anyio

from scanner.clock import Clock
from scanner.engine.config import RateLimit
from scanner.engine.rate_control import Phase, RateController

__all__ = ["ClientRateLimiter", "ClientRateLimiters", "Pacer", "PeerRates", "RateLimiterState"]


@dataclass(frozen=True, slots=True)
class RateLimiterState:
    """A read-only snapshot of one scope's limiter."""

    phase: Phase
    rate: float | None  # requests/s now being allowed; None: not paced
    window: int | None  # slow start's current round size; None: no window
    w_max: float | None  # CUBIC's last rate at a throttle
    paused_for: float  # seconds of retry-after pause left (0.0: none)
    throttles: int
    cuts: int
    sent: int


class Pacer:
    """Spaces sends at a given rate (GCRA) on the clock, and lets slow start's rounds wait for answers."""

    __slots__ = ("_answer", "_burst", "_clock", "_last_due", "credit", "queue")

    def __init__(self, clock: Clock, burst_seconds: float) -> None:
        self._clock = clock
        self._burst = burst_seconds
        self._last_due = -math.inf  # GCRA: when the last send was due (the next: one interval on)
        #: Sends booked at once, before pacing starts (a seeded scope's first burst).
        self.credit = 0
        self._answer: anyio.Event | None = None
        #: FIFO: waiters for a slot queue here; only the head books one.
        self.queue = anyio.Lock()

    def book(self, rate: float | None, not_before: float) -> tuple[float, float]:
        """Book the next send slot at ``rate`` (``None``: unpaced), not before ``not_before``.

        Returns ``(delay before sending, send time)``. Never blocks.
        """
        now = self._clock.monotonic()
        start = max(now, not_before)
        if rate is None:
            return start - now, start
        if self.credit > 0:
            self.credit -= 1
            self.empty(start)  # the burst empties the server's bucket: then one interval on
            return start - now, start
        # One interval at the rate of now, not of the last booking: a changed rate applies at once.
        due = max(self._last_due + 1.0 / rate, start)
        self._last_due = due
        send_at = max(start, due - self._burst)
        return send_at - now, send_at

    async def wait(self, delay: float) -> None:
        """Sleep until a booked slot (on the clock, so a fake one makes it instant)."""
        if delay > 0:
            await self._clock.sleep(delay)

    def empty(self, at: float) -> None:
        """The server's bucket was empty at ``at`` (a throttle): the next send is one interval on."""
        self._last_due = at + self._burst

    async def wait_for_answer(self, within: float) -> bool:
        """Wait until ``answered`` is called, for ``within`` seconds at most; False if none came.

        On loop time, not the injected clock: this is a safety net, not pacing, and a fake
        clock's sleep would fire it at once.
        """
        answer = self._answer
        if answer is None:
            answer = self._answer = anyio.Event()
        with anyio.move_on_after(within):
            await answer.wait()
            return True
        return False

    def answered(self) -> None:
        answer = self._answer
        if answer is not None:
            self._answer = None
            answer.set()


class ClientRateLimiter:
    """Paces one (region, action) scope. ``acquire`` before each request; report each outcome.

    Report every answer: ``on_success``, ``on_throttle`` or ``on_error`` (slow start counts
    answers). A request never reported (cancelled, say) leaves its round waiting until the
    controller's ``answer_timeout``, which then ends slow start.
    """

    __slots__ = ("_clock", "_pacer", "_peers", "_told_burst", "_told_provisional", "controller")

    def __init__(
        self, config: RateLimit, clock: Clock, *, peers: tuple[PeerRates, tuple[str, str]] | None = None
    ) -> None:
        self._clock = clock
        self.controller = RateController(config)
        self._pacer = Pacer(clock, config.burst_seconds)
        #: The ``PeerRates`` this scope learns with, and its key there.
        self._peers = peers
        self._told_burst = self._told_provisional = False
        if peers is not None:
            board, key = peers
            seed = board.seed(key)
            if seed is not None:
                rate, burst = seed
                if self.controller.start_from(rate, clock.monotonic()):
                    self._pacer.credit = burst

    @property
    def rate(self) -> float | None:
        return self.controller.rate

    @property
    def window(self) -> int | None:
        return self.controller.window

    @property
    def throttles(self) -> int:
        return self.controller.throttles

    @property
    def cuts(self) -> int:
        return self.controller.cuts

    @property
    def phase(self) -> Phase:
        return self.controller.phase_at(self._clock.monotonic())

    def window_open(self) -> bool:
        return self.controller.window_open()

    async def acquire(self) -> float:
        """Wait for this scope's next send slot. Returns the send time, to pass to ``on_*``."""
        control = self.controller
        now = self._clock.monotonic()
        if (
            control.rate is None
            and control.paused_until <= now
            and (control.window is None or control.window_open())
        ):
            control.on_send(now)
            return now
        return await self._wait_for_slot()

    async def _wait_for_slot(self) -> float:
        control = self.controller
        async with self._pacer.queue:
            while not control.window_open():
                if not await self._pacer.wait_for_answer(control.answer_timeout()):
                    self._paced_from(control.give_up_round(self._clock.monotonic()))
            delay, send_at = self.reserve()
            await self._pacer.wait(delay)
        return send_at

    def reserve(self) -> tuple[float, float]:
        """Book the next send slot: ``(delay before sending, send time)``. Never blocks.

        Does not look at slow start's window: ask ``window_open`` first.
        """
        control = self.controller
        delay, send_at = self._pacer.book(control.rate, control.paused_until)
        control.on_send(send_at)
        return delay, send_at

    def on_success(self, sent_at: float) -> None:
        control = self.controller
        if control.window is None:  # not in slow start: nothing waits for answers
            control.on_success(sent_at, self._clock.monotonic())
        else:
            self._paced_from(control.on_success(sent_at, self._clock.monotonic()))
            self._pacer.answered()
        if control.guessing and self._peers is not None:
            self._follow_peers()

    def on_error(self, sent_at: float) -> None:
        """A request failed otherwise than by a throttle: answered, but says nothing of the rate."""
        control = self.controller
        if control.window is not None:
            self._paced_from(control.on_error(self._clock.monotonic()))
            self._pacer.answered()

    def on_throttle(self, sent_at: float, retry_after_ms: int | None = None) -> None:
        control = self.controller
        unpaced = control.rate is None
        cuts = control.cuts
        rate = control.on_throttle(sent_at, self._clock.monotonic(), retry_after_ms)
        if unpaced:
            self._paced_from(rate)
        self._pacer.credit = 0
        self._pacer.answered()
        if self._peers is not None:
            if control.cuts != cuts:
                self._tell_peers()
            if control.guessing:
                self._follow_peers()

    def _follow_peers(self) -> None:
        """A guess (``RateController.guessing``) gives way to what peers measured, if they have."""
        assert self._peers is not None
        board, key = self._peers
        hint = board.hint(key)
        if hint is not None:
            self.controller.follow(hint, self._clock.monotonic())

    def _tell_peers(self) -> None:
        """A cut: what it measured, and (once) the burst slow start got through, to the peers."""
        assert self._peers is not None
        board, key = self._peers
        control = self.controller
        burst = None if self._told_burst else control.burst
        self._told_burst = self._told_burst or burst is not None
        provisional = None if self._told_provisional else control.provisional
        self._told_provisional = self._told_provisional or provisional is not None
        board.learned(key, control.learned, burst, provisional)

    def _paced_from(self, rate: float | None) -> None:
        """An answer (or a round given up on) took an unpaced scope to ``rate``, after a throttle.

        The server's bucket was empty at that throttle: the first paced request goes one interval
        after it. (A throttled slow-start round is decided at its last answer, often a success
        that came an API's latency after the throttle: the bucket has been refilling since.)
        """
        if rate is not None:
            self._pacer.empty(self.controller.last_throttle)

    def snapshot(self) -> RateLimiterState:
        control = self.controller
        now = self._clock.monotonic()
        return RateLimiterState(
            phase=control.phase_at(now),
            rate=control.rate,
            window=control.window,
            w_max=control.w_max,
            paused_for=max(0.0, control.paused_until - now),
            throttles=control.throttles,
            cuts=control.cuts,
            sent=control.sent,
        )

    def __repr__(self) -> str:
        return f"ClientRateLimiter({self.controller!r})"


class PeerRates:
    """What the scopes of each (region, action) learned, across the accounts of a scan.

    ``learned`` records a scope's limit as measured at a cut on the curve (settled), what got
    through when its ramp ended (provisional: a first, rougher measure), and the burst its first
    round got through. ``hint`` is the median of the last ``keep`` settled rates once
    ``min_peers`` have come in; before that, of the provisional and settled ones together once
    ``min_peers`` have (``None`` before: scopes learn on their own). ``seed`` is the hint and
    the median burst, for a new scope. A median of several: one account's smaller quota does
    not set its peers' rate, and a scope that followed too high a hint is cut on its own.
    """

    __slots__ = ("_bursts", "_hints", "_keep", "_min_peers", "_provisional", "_rates")

    def __init__(self, *, keep: int = 32, min_peers: int = 3) -> None:
        self._keep = keep
        self._min_peers = min_peers
        self._rates: dict[tuple[str, str], deque[float]] = {}
        self._provisional: dict[tuple[str, str], deque[float]] = {}
        self._bursts: dict[tuple[str, str], deque[int]] = {}
        self._hints: dict[tuple[str, str], float] = {}

    def learned(
        self, key: tuple[str, str], rate: float | None, burst: int | None, provisional: float | None = None
    ) -> None:
        if rate is not None:
            self._rates.setdefault(key, deque(maxlen=self._keep)).append(rate)
        if provisional is not None:
            self._provisional.setdefault(key, deque(maxlen=self._keep)).append(provisional)
        if burst is not None:
            self._bursts.setdefault(key, deque(maxlen=self._keep)).append(burst)
        if rate is not None or provisional is not None:
            rates = list(self._rates.get(key, ()))
            if len(rates) < self._min_peers:
                rates.extend(self._provisional.get(key, ()))
            if len(rates) >= self._min_peers:
                self._hints[key] = statistics.median(rates)

    def hint(self, key: tuple[str, str]) -> float | None:
        """The rate peers of ``key`` measured (``None``: too few have)."""
        return self._hints.get(key)

    def seed(self, key: tuple[str, str]) -> tuple[float, int] | None:
        """``(rate, burst)`` for a new scope of ``key``; ``None``: too few peers have learned."""
        rate = self._hints.get(key)
        if rate is None:
            return None
        bursts = self._bursts.get(key)
        burst = int(statistics.median_low(bursts)) if bursts else 1
        return rate, burst

    def __repr__(self) -> str:
        learned = {f"{region}/{action}": len(rates) for (region, action), rates in self._rates.items()}
        return f"PeerRates({learned})"


class ClientRateLimiters:
    """The client's limiters of a scan, one per (region, action), created on first use.

    After ``join(peers)``, new limiters start from what their peers learned (``PeerRates``).
    """

    __slots__ = ("_clock", "_config", "_limiters", "_peers")

    def __init__(self, config: RateLimit, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._limiters: dict[tuple[str, str], ClientRateLimiter] = {}
        self._peers: PeerRates | None = None

    def join(self, peers: PeerRates) -> None:
        """Learn with ``peers``: the scopes made from now on seed from, and report to, them."""
        self._peers = peers

    @property
    def peers(self) -> PeerRates | None:
        """The ``PeerRates`` joined (``None``: this registry's scopes learn on their own)."""
        return self._peers

    def get(self, region: str, action: str) -> ClientRateLimiter:
        key = (region, action)
        limiter = self._limiters.get(key)
        if limiter is None:
            peers = None if self._peers is None else (self._peers, key)
            limiter = self._limiters[key] = ClientRateLimiter(self._config, self._clock, peers=peers)
        return limiter

    def snapshot(self) -> dict[tuple[str, str], RateLimiterState]:
        return {key: limiter.snapshot() for key, limiter in self._limiters.items()}
