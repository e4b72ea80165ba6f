"""The rate controller of one (region, action) scope: which phase it is in and what rate it allows.

Pure, like botocore's ``CubicCalculator``: every event carries its timestamps, nothing here reads
a clock or waits, so the control law is tested as plain function calls. The waiting is
``engine/pacing.py``'s. The phases (``Phase``), in the order a scope meets them:

- ``SLOW_START`` (no ceiling configured, nothing throttled yet): requests go out in rounds, as
  TCP's slow start sends windows. The first round is ``slow_start_window`` requests; the next
  waits until every request of the one before has been answered, and is twice as large. From a
  window of ``slow_start_max_window`` on, the scope is ``UNLIMITED``. An unlimited API costs a
  couple of round trips at the start of a scope; a rate-limited one sees at most one round's
  excess over its burst throttled, instead of every task of the region at once. A round with a
  throttle in it is decided when all of its answers are in: a throttle is often answered at
  once, before the successes sent with it (which take the API's full latency), and a decision
  at the first throttle would take the burst's successes for none.
- ``FIXED``: paced at the configured ``requests_per_second``, nothing throttled yet (and for
  ever when not ``adaptive``).
- ``RAMP``: a throttle when what got through was only a burst (a throttled slow-start round, or
  under half a second of sending: the scope's first, or its first after a pause) says the
  burst is spent, nothing of the rate. The rate starts from what got through in the last second
  and doubles every ``ramp_doubling_seconds`` until the next throttle.
- ``CUBIC``, as botocore's adaptive mode: a throttle cuts the rate to ``beta`` times what got
  through (in the last second, or since the previous cut if more: the server's limit as
  measured, not the rate being sent), remembered as ``w_max``; successes grow it again along
  ``scale * (t - K)**3 + w_max``. The throttle that ends a ramp knows less (the ramp overshot):
  the rate drops to ``beta`` times the geometric mean of the rate sent and the rate that got
  through, and the curve rises from there toward the overshoot.
- Seeded (``start_from``): in a scan of several accounts, a scope whose peers (the same region
  and action in other accounts) have already learned the API's limit starts on the curve, at
  their rate, on its plateau: no slow start and no ramp from a burst.
- Following (``follow``): an organisation's scopes start within seconds of each other, before
  any peer has learned anything, so most ramp from their own burst (``guessing``). The throttle
  that ends a ramp measures what got through (``provisional``: rough, but the burst's rate can
  be several times the limit); once peers have measured the limit, a guessing scope moves to
  their rate, on the curve's plateau, as a seeded one starts.
- ``PAUSED``: an ``x-acs-retry-after`` hint pauses the whole scope, at most ``MAX_RETRY_AFTER_S``
  (60 s); ``phase_at(now)`` reports it, and the phase beneath resumes when it ends.

Unlike botocore, one controller serves every task of the scope, so a throttle cuts only if its
request was sent after the previous cut (plus ``cooldown_seconds``): answers to requests sent at
the old rate say nothing new (TCP's one decrease per window); one sent since the cut, within the
cooldown, stops growth until the cooldown ends. A throttle never raises the rate.

A slow scope (an organisation's: 1/s per account, region and action) is measured in requests,
not seconds: sends and successes are counted over at least four intervals at its rate, a cut's
cooldown lasts at least two, a ramp doubles at most once an interval, and CUBIC's curve runs
slower in proportion below 10/s. With botocore's constants in seconds, such a scope doubled its
rate three requests after a cut and had every other request throttled.
"""

from __future__ import annotations

import enum
import math
from collections import deque

from scanner.engine.config import RateLimit, retry_after_seconds

__all__ = ["CubicCurve", "Phase", "RateController", "SendRateMeter"]

#: A grown rate may not exceed this many times the rate actually sent (botocore's cap), so the
#: limit does not balloon while something else (concurrency, latency) is what holds us back.
_MAX_GROWTH_OVER_MEASURED = 2.0

#: Below this rate, CUBIC's curve is slowed in proportion (``CubicCurve``).
_CUBIC_FULL_SPEED_RATE = 10.0

#: A ramp stops doubling after this many doublings (far above any rate; the growth cap over the
#: measured rate holds it anyway), so that its arithmetic cannot overflow.
_MAX_DOUBLINGS = 64.0

#: The span over which sends and successes are counted, in seconds: at least this...
_METER_WINDOW = 1.0
#: ...and at least this many intervals at the scope's rate, so that a slow scope (a limit of
#: 1/s) still counts a few events: one send in a 1 s window says nothing of a rate.
_METER_INTERVALS = 4.0

#: What got through in less than this part of the window's sending was a burst, not a rate.
_BURST_PART = 0.5

#: A ramp doubles no faster than every this many intervals at its starting rate, and a cut's
#: cooldown lasts at least this many intervals at the rate it cut to: at 1/s, a cooldown of
#: 0.5 s would end before the next request, and a second throttle of the same excess would cut
#: again (down to min_rate).
_RAMP_INTERVALS = 1.0
_COOLDOWN_INTERVALS = 2.0

#: In slow start, a request is given up on (as failed unreported) after this many times the
#: slowest answer yet, but not under the floor, in seconds.
_OVERDUE_FACTOR = 4.0
_OVERDUE_FLOOR = 0.05


class Phase(enum.Enum):
    """Where a scope's rate comes from (see the module docstring)."""

    SLOW_START = "slow start"
    UNLIMITED = "unlimited"
    FIXED = "fixed"
    RAMP = "ramp"
    CUBIC = "cubic"
    PAUSED = "paused"


class CubicCurve:
    """CUBIC window growth, in requests per second. Pure: time is passed in.

    Below ``_CUBIC_FULL_SPEED_RATE`` the curve's clock runs slower, in proportion to ``w_max``:
    the constants are botocore's, in requests per second and seconds, and at a limit of 1/s its
    curve doubles the rate within three seconds of a cut (three requests), then throttles again.
    Slowed, a probe takes as many requests at 1/s as at ``_CUBIC_FULL_SPEED_RATE``.
    """

    __slots__ = ("_beta", "_k", "_last_cut", "_pace", "_scale", "w_max")

    def __init__(self, *, w_max: float, at: float, scale: float, beta: float) -> None:
        self._scale = scale
        self._beta = beta
        self.w_max = w_max
        self._last_cut = at
        self._pace = self._pace_of(w_max)
        self._k = self._zero_point()

    @staticmethod
    def _pace_of(w_max: float) -> float:
        return min(1.0, w_max / _CUBIC_FULL_SPEED_RATE)

    def _zero_point(self) -> float:
        return float(math.cbrt(self.w_max * (1 - self._beta) / self._scale))

    def rate_at(self, now: float) -> float:
        return self._scale * ((now - self._last_cut) * self._pace - self._k) ** 3 + self.w_max

    def plateau(self, at: float) -> None:
        """Put the curve at its plateau at ``at``: the rate is ``w_max`` then, and probes up after."""
        self._k = self._zero_point()
        self._last_cut = at - self._k / self._pace

    def cut(self, rate: float, at: float, *, to: float | None = None) -> float:
        """A throttle at ``rate``: remember it as ``w_max`` and return the decreased rate.

        ``to`` decreases to that rate instead of ``beta * rate``, the curve rising from it.
        """
        self.w_max = rate
        self._last_cut = at
        self._pace = self._pace_of(rate)
        if to is None:
            self._k = self._zero_point()
            return rate * self._beta
        self._k = float(math.cbrt(max(0.0, rate - to) / self._scale))
        return to


class SendRateMeter:
    """Events per second over the last ``window`` seconds.

    A run of events starts with the first, or the first after a pause of a window or more; a run
    younger than the window is counted over its own span (but not over ~0 seconds).
    """

    __slots__ = ("_since", "_times", "_window")

    def __init__(self, window: float = _METER_WINDOW) -> None:
        self._window = window
        self._times: deque[float] = deque()
        self._since = 0.0  # when the current run of events started

    @property
    def window(self) -> float:
        return self._window

    @window.setter
    def window(self, seconds: float) -> None:
        """A new span; events older than it are dropped as the next ones are recorded."""
        self._window = seconds

    def record(self, now: float) -> None:
        times = self._times
        horizon = now - self._window
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            self._since = now
        times.append(now)

    def count(self, now: float) -> int:
        """Events in the last ``window`` seconds."""
        times = self._times
        horizon = now - self._window
        while times and times[0] < horizon:
            times.popleft()
        return len(times)

    def span(self, now: float) -> float:
        """Seconds since the current run of events started (0.0: no events in the window)."""
        return now - self._since if self.count(now) else 0.0

    def rate(self, now: float) -> float:
        count = self.count(now)
        if not count:
            return 0.0
        span = now - self._since
        if span < self._window:
            return count / max(span, self._window / 20)
        return count / self._window


class RateController:
    """Decides a scope's rate from its events: sends, successes, errors, throttles.

    ``rate`` is the requests per second allowed (``None``: not paced), ``paused_until`` the end of
    a retry-after pause, ``window_open()`` whether slow start lets one more request go before more
    answers come, ``last_throttle`` when the server last said its bucket was empty. Each ``on_*``
    method takes the times it needs and returns the new rate.
    """

    __slots__ = (
        "_answered",
        "_ceiling",
        "_config",
        "_cooldown",
        "_cubic",
        "_followed",
        "_frozen_until",
        "_guessing",
        "_last_cut",
        "_ramp_period",
        "_ramp_since",
        "_ramp_start",
        "_round_budget",
        "_round_throttled",
        "_seeded",
        "_sends",
        "_since_cut",
        "_slowest_answer",
        "_successes",
        "burst",
        "cuts",
        "last_throttle",
        "learned",
        "paused_until",
        "phase",
        "provisional",
        "rate",
        "sent",
        "throttles",
        "window",
    )

    def __init__(self, config: RateLimit) -> None:
        self._config = config
        self._ceiling = config.requests_per_second
        self.rate: float | None = config.requests_per_second
        self.phase = Phase.FIXED if self.rate is not None else Phase.SLOW_START
        # Slow start: a round may send up to ``_round_budget`` requests in all; it ends when
        # every request sent has been answered.
        self.window: int | None = config.slow_start_window if self.phase is Phase.SLOW_START else None
        self._round_budget = self.window or 0
        self._round_throttled = False  # a throttle in this round: decide when it is answered
        self._answered = 0
        self._slowest_answer: float | None = None  # seconds, in slow start
        self.paused_until = -math.inf
        self._sends = SendRateMeter()
        self._successes = SendRateMeter()
        self._cubic: CubicCurve | None = None
        self._ramp_start = 0.0  # in RAMP: the rate doubles from this...
        self._ramp_since = 0.0  # ...since this time...
        self._ramp_period = config.ramp_doubling_seconds  # ...every this many seconds
        self._last_cut = -math.inf
        self._cooldown = config.cooldown_seconds  # after the last cut
        self._seeded = False  # started from peers' rate, and not cut since
        self._followed = False  # started from (or moved to) peers' rate once: not again
        self._guessing = False  # ramped from a burst, and not settled since: see ``guessing``
        self._since_cut = 0  # successes since the last cut
        self._frozen_until = -math.inf  # no growth before then
        self.throttles = 0
        self.last_throttle = -math.inf  # when the server's bucket was last found empty
        self.cuts = 0
        self.sent = 0
        #: What this scope learned of the server, for its peers (``PeerRates``): the limit as
        #: measured at its last cut on the curve, and the burst its throttled slow-start round
        #: got through. ``None``: not learned (yet).
        self.learned: float | None = None
        self.burst: int | None = None
        #: What got through when the throttle that ended this scope's ramp came: a first,
        #: rough measure of the limit, for peers that have nothing better (``PeerRates.hint``).
        self.provisional: float | None = None
        if self.rate is not None:
            self._set_rate(self.rate)

    # --- what the pacer asks ------------------------------------------------------------------

    @property
    def w_max(self) -> float | None:
        """CUBIC's rate at the last cut (``None``: no cut on the curve yet)."""
        return self._cubic.w_max if self._cubic is not None else None

    def phase_at(self, now: float) -> Phase:
        return Phase.PAUSED if now < self.paused_until else self.phase

    def window_open(self) -> bool:
        """Whether slow start lets a request go now, without waiting for answers.

        A round with a throttle in it sends no more: it waits for its answers, then the decision.
        """
        return self.window is None or (self.sent < self._round_budget and not self._round_throttled)

    def answer_timeout(self) -> float:
        """How long a closed round waits for answers before ``give_up_round``, in seconds.

        A request that failed unreported never answers; once answers have come, one is overdue at
        a few times the slowest of them.
        """
        timeout = self._config.slow_start_timeout
        if self._slowest_answer is not None:
            timeout = min(timeout, max(_OVERDUE_FACTOR * self._slowest_answer, _OVERDUE_FLOOR))
        return timeout

    # --- events -------------------------------------------------------------------------------

    def start_from(self, rate: float, at: float) -> bool:
        """Start at ``rate`` (what peer scopes of the same API learned), on the curve's plateau.

        For a scope that has sent nothing yet: no slow start, no ramp from a burst; it paces at
        ``rate`` from the first request and probes up from there as a cut scope does. A scope
        with a configured ceiling (or not adaptive) keeps it: False, nothing changed.
        """
        if self.phase is not Phase.SLOW_START or self.sent:
            return False
        self.window = None
        self._plateau_at(rate, at)
        return True

    @property
    def guessing(self) -> bool:
        """Whether the rate is still this scope's own guess, and its peers' may replace it.

        A ramp from slow start's burst, or the curve after the throttle that ended it (toward
        the ramp's overshoot): the scope has found its burst, not its limit (``learned``), and
        has not started from its peers' rate yet (``start_from``, ``follow``).
        """
        return self._guessing and self.learned is None

    def follow(self, rate: float, now: float) -> bool:
        """Leave a guess (``guessing``) for ``rate``, what peer scopes measured: its plateau.

        As ``start_from``, mid-way: the rate is ``rate`` from now on, on the curve, probing up
        from it. Answers to requests sent before ``now`` were sent at the guess: as after a cut,
        their throttles cut nothing. False if not guessing.
        """
        if not self.guessing:
            return False
        self._plateau_at(rate, now)
        self._last_cut = now
        self._since_cut = 0
        self._frozen_until = -math.inf
        self._cooldown = max(self._config.cooldown_seconds, _COOLDOWN_INTERVALS / (self.rate or rate))
        return True

    def _plateau_at(self, rate: float, at: float) -> None:
        config = self._config
        self.phase = Phase.CUBIC
        self._seeded = self._followed = True
        self._guessing = False
        rate = self._set_rate(rate)
        self._cubic = CubicCurve(w_max=rate, at=at, scale=config.scale, beta=config.beta)
        self._cubic.plateau(at)

    def on_send(self, send_at: float) -> None:
        self._sends.record(send_at)
        self.sent += 1

    def give_up_round(self, now: float) -> float | None:
        """A round's answers are overdue: decide from those in (unlimited if none was throttled)."""
        if self._round_throttled:
            self._decide_throttled_round(now)
        else:
            self._end_slow_start()
        return self.rate

    def on_success(self, sent_at: float, now: float) -> float | None:
        if not self._config.adaptive:
            return self.rate
        self._successes.record(now)
        self._since_cut += 1
        if self.window is not None:
            took = now - sent_at
            if self._slowest_answer is None or took > self._slowest_answer:
                self._slowest_answer = took
            self._answered_one(now)
            return self.rate
        if now < self._frozen_until:
            return self.rate
        phase = self.phase
        if phase is Phase.RAMP:
            doublings = (now - self._ramp_since) / self._ramp_period
            # Capped: 2.0 ** 1024 overflows, about six minutes into a ramp that meets no throttle.
            grown = self._ramp_start * 2.0 ** min(doublings, _MAX_DOUBLINGS)
        elif phase is Phase.CUBIC:
            assert self._cubic is not None
            grown = self._cubic.rate_at(now)
        else:
            return self.rate
        measured = self._sends.rate(now)
        if measured > 0:
            grown = min(grown, _MAX_GROWTH_OVER_MEASURED * measured)
        return self._set_rate(grown)

    def on_error(self, now: float) -> float | None:
        """A request failed otherwise than by a throttle: answered, but says nothing of the rate.

        In slow start it may be a throttled round's last answer, which decides the rate.
        """
        if self._config.adaptive and self.window is not None:
            self._answered_one(now)
        return self.rate

    def on_throttle(self, sent_at: float, now: float, retry_after_ms: int | None = None) -> float | None:
        self.throttles += 1
        self.last_throttle = now
        if retry_after_ms is not None and retry_after_ms > 0:
            self.paused_until = max(self.paused_until, now + retry_after_seconds(retry_after_ms))
        if not self._config.adaptive:
            return self.rate
        if self.window is not None:
            # Slow start: wait for the rest of the round's answers (module docstring).
            self._round_throttled = True
            self._answered_one(now)
            return self.rate
        cooled = self._last_cut + self._cooldown
        if sent_at < cooled:
            if sent_at >= self._last_cut:
                # Sent at the rate of the last cut and still throttled: no growth until the
                # cooldown lets a throttle cut again.
                self._frozen_until = cooled
                if self.phase is Phase.RAMP:
                    self._begin_ramp(self.rate or self._config.min_rate, cooled)
            return self.rate
        if self._sends.span(now) < _BURST_PART * self._sends.window and not self._seeded:
            # (A seeded scope's first sends are a burst too, but it knows its rate: a cut.)
            self._start_ramp(now)
        else:
            self._cut(now)
        self._mark_cut(now)
        return self.rate

    # --- the control law ----------------------------------------------------------------------

    def _got_through(self, now: float) -> float:
        """What the server let through, per second: the best estimate of its limit.

        In the last second, or since the previous cut if more (a throttle says its bucket is
        empty, so what got through between two of them is what it refilled; the last second
        alone may be mostly a ramp). After a ramp, the last second holds the burst that ended
        slow start: count from its cut.

        A slow scope on the curve counts from its previous cut only. Its meter's window (four
        intervals) is close to the server's burst (5 at 1/s): what got through in it, as a probe
        spent the tokens saved since the cut, read 20-40% above the limit, the curve's plateau
        was set there, and the next throttle came a few requests later.
        """
        window = self._successes.window
        succeeded = self._successes.count(now) / window
        elapsed = now - self._last_cut
        since_cut = self._since_cut / elapsed if self.cuts and elapsed > 0 else 0.0
        if self.phase is Phase.RAMP:
            return since_cut
        if elapsed >= window:
            slow = self.rate is not None and self.rate < _CUBIC_FULL_SPEED_RATE
            if slow and self.cuts and self.phase is Phase.CUBIC:
                return since_cut
            return max(succeeded, since_cut)
        return succeeded

    def _decide_throttled_round(self, now: float) -> None:
        """A slow-start round with a throttle in it is answered: a burst, so ramp from it."""
        self.burst = self._since_cut  # the successes of slow start: what the burst let through
        self._end_slow_start()
        self._start_ramp(now)
        self._mark_cut(now)

    def _mark_cut(self, now: float) -> None:
        """A cut (or a ramp's start) at ``now``: its cooldown is counted from here."""
        self._seeded = False
        self._last_cut = now
        self._since_cut = 0
        self.cuts += 1
        rate = self.rate
        cooldown = self._config.cooldown_seconds
        self._cooldown = cooldown if rate is None else max(cooldown, _COOLDOWN_INTERVALS / rate)

    def _start_ramp(self, now: float) -> None:
        """What got through was a burst: start from it, and ramp up until the next throttle."""
        start = max(self._got_through(now), self._config.min_rate)
        if self.rate is not None:
            start = min(start, self.rate)  # a throttle never raises the rate
        self.phase = Phase.RAMP
        self._guessing = not self._followed
        self._begin_ramp(start, now)
        self._set_rate(start)

    def _begin_ramp(self, start: float, since: float) -> None:
        self._ramp_start, self._ramp_since = start, since
        self._ramp_period = max(self._config.ramp_doubling_seconds, _RAMP_INTERVALS / start)

    def _cut(self, now: float) -> None:
        """A cut of the rate that got through, on the CUBIC curve."""
        config = self._config
        succeeded = self._got_through(now)
        sending = self._sends.rate(now) if self.rate is None else self.rate
        current = min(sending, succeeded) if succeeded > 0 else sending * config.beta
        current = max(current, config.min_rate)
        to = None
        if self.phase is Phase.RAMP:
            # The end of a ramp: between an overshoot and an undershoot (module docstring).
            if succeeded > 0:
                self.provisional = current
            to = config.beta * math.sqrt(sending * current)
            current = sending
        if self.phase is Phase.CUBIC and succeeded > 0:
            # What a settled scope measured (not the end of a ramp, which overshot, nor a cut
            # with nothing through, which knows only what it sent): what its peers start from.
            self.learned = current
        if self._cubic is None:
            self._cubic = CubicCurve(w_max=current, at=now, scale=config.scale, beta=config.beta)
        self.phase = Phase.CUBIC
        self._set_rate(self._cubic.cut(current, now, to=to))

    def _set_rate(self, rate: float) -> float:
        rate = max(self._config.min_rate, rate)
        if self._ceiling is not None:
            rate = min(self._ceiling, rate)
        self.rate = rate
        self._sends.window = self._successes.window = max(_METER_WINDOW, _METER_INTERVALS / rate)
        return rate

    # --- slow start ---------------------------------------------------------------------------

    def _answered_one(self, now: float) -> None:
        self._answered += 1
        if self._answered < self.sent:
            return
        if self._round_throttled:  # the round is over: every answer that will come is in
            self._decide_throttled_round(now)
        else:  # the round is over, and nothing in it was throttled
            assert self.window is not None
            window = self.window * 2
            if window >= self._config.slow_start_max_window:
                self._end_slow_start()
            else:
                self.window = window
                self._round_budget = self.sent + window

    def _end_slow_start(self) -> None:
        if self.phase is Phase.SLOW_START:
            self.phase = Phase.UNLIMITED
            self.window = None

    def __repr__(self) -> str:
        if self.rate is not None:
            pace = f"{self.rate:.1f}/s"
        elif self.window is not None:
            pace = f"window {self.window}"
        else:
            pace = "not paced"
        return f"RateController({self.phase.value}, {pace}, throttles={self.throttles}, cuts={self.cuts})"
