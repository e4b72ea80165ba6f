"""The adaptive rate limiter: pacing, server hints, CUBIC, and convergence against a hidden limit."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass

import pytest

from scanner.engine.config import RateLimit
from scanner.engine.ratelimit import AdaptiveRateLimiter, CubicCurve, RateLimiters, SendRateMeter
from scanner.errors import ConfigError
from scanner.testing import FakeClock


def test_an_unconfigured_limiter_does_not_pace_until_throttled() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(), clock)
    assert [limiter.reserve()[0] for _ in range(1000)] == [0.0] * 1000
    assert limiter.rate is None


def test_a_configured_rate_spaces_requests_evenly_after_a_small_burst() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(requests_per_second=100, burst_seconds=0.05), clock)
    delays = [limiter.reserve()[0] for _ in range(20)]
    # 0.05 s of burst = 5 requests at once (plus the first), then one every 10 ms.
    assert delays[:6] == pytest.approx([0.0] * 6)
    assert delays[6:] == pytest.approx([0.01 * i for i in range(1, 15)])


def test_pacing_resumes_from_now_after_idle_time() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(requests_per_second=10, burst_seconds=0.1), clock)
    for _ in range(5):
        limiter.reserve()
    clock.advance(100)
    delays = [limiter.reserve()[0] for _ in range(3)]
    assert delays == pytest.approx([0.0, 0.0, 0.1])  # burst budget again, not 100 s of credit


def test_retry_after_pauses_the_whole_scope() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(), clock)
    _, sent = limiter.reserve()
    limiter.on_throttle(sent, retry_after_ms=1500)
    delay, _ = limiter.reserve()
    assert delay == pytest.approx(1.5)


def test_a_throttle_cuts_to_beta_times_what_got_through_once_per_cooldown() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(beta=0.7, cooldown_seconds=0.5), clock)
    sends = []
    for _ in range(100):  # 100 requests over one second, 60 of them let through
        clock.advance(0.01)
        sends.append(limiter.reserve()[1])
        if len(sends) <= 60:
            limiter.on_success(sends[-1])
    limiter.on_throttle(sends[-1])
    first = limiter.rate
    assert first == pytest.approx(0.7 * 60, rel=0.05)
    # Throttles of requests sent before the cut, or within the cooldown after it, change nothing:
    # the server is still working off the excess that caused the first one.
    for sent in sends[:-1]:
        limiter.on_throttle(sent)
    clock.advance(0.3)
    limiter.on_throttle(limiter.reserve()[1])
    assert limiter.rate == first
    assert limiter.cuts == 1
    assert limiter.throttles == 101
    # After the cooldown, a throttle cuts again.
    clock.advance(0.3)
    limiter.on_throttle(limiter.reserve()[1])
    assert limiter.cuts == 2
    assert limiter.rate is not None
    assert limiter.rate < first


def test_with_nothing_getting_through_it_backs_off_from_what_it_sends() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(beta=0.5), clock)
    for _ in range(100):
        clock.advance(0.01)
        _, sent = limiter.reserve()
    limiter.on_throttle(sent)
    assert limiter.rate == pytest.approx(100 * 0.5 * 0.5, rel=0.05)


def test_a_throttle_never_drops_below_the_floor_or_rises_above_the_ceiling() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(requests_per_second=5, min_rate=2, cooldown_seconds=0.1), clock)
    for _ in range(10):
        clock.advance(1)
        _, sent = limiter.reserve()
        limiter.on_throttle(sent)
    assert limiter.rate == 2
    for _ in range(1000):
        clock.advance(0.05)
        _, sent = limiter.reserve()
        limiter.on_success(sent)
    assert limiter.rate == 5


def test_cubic_curve_matches_botocore() -> None:
    curve = CubicCurve(w_max=10, at=0, scale=0.4, beta=0.7)
    assert curve.cut(10, at=0) == pytest.approx(7)
    k = (10 * 0.3 / 0.4) ** (1 / 3)
    assert curve.rate_at(0) == pytest.approx(7)
    assert curve.rate_at(k) == pytest.approx(10)
    assert curve.rate_at(k + 1) == pytest.approx(10.4)


def test_send_rate_meter() -> None:
    meter = SendRateMeter(window=1.0)
    for i in range(50):
        meter.record(i * 0.02)
    assert meter.rate(1.0) == pytest.approx(50, rel=0.05)
    assert meter.rate(5.0) == 0


def test_limiters_are_per_region_and_action() -> None:
    limiters = RateLimiters(RateLimit(), FakeClock())
    assert limiters.get("a", "X") is limiters.get("a", "X")
    assert limiters.get("a", "X") is not limiters.get("a", "Y")
    assert limiters.get("a", "X") is not limiters.get("b", "X")


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        RateLimit(requests_per_second=0)
    with pytest.raises(ConfigError):
        RateLimit(beta=1.5)
    with pytest.raises(ConfigError, match="needs requests_per_second"):
        RateLimit(adaptive=False)


# --- convergence against a limit the client is not told ---------------------------------------


@dataclass
class ServerBucket:
    """The server side: a token bucket of ``rate`` per second with a burst of ``burst`` requests."""

    rate: float
    burst: float
    tokens: float = 0.0
    last: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def admit(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(limit: float, *, workers: int, latency: float, seconds: float, seed: int) -> tuple[float, float]:
    """Discrete-event run of ``workers`` clients sharing one limiter against a hidden limit.

    Mirrors ``AdaptiveRateLimiter.acquire``: ready workers queue in order and only the head books a
    slot (``reserve``), releasing the queue when its slot comes. Returns (successful requests per
    second after a 10 s warm-up, fraction of all requests throttled).
    """
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(), clock)
    server = ServerBucket(limit, burst=max(1.0, limit * 0.1))
    rng = random.Random(seed)
    seq = itertools.count()
    events: list[tuple[float, int, str, int, float, int]] = []  # time, seq, kind, worker, sent, tries
    queue: list[tuple[int, int]] = []  # (worker, tries) waiting for the pacing lock
    head_busy = False

    def push(at: float, kind: str, worker: int, sent: float = 0.0, tries: int = 0) -> None:
        heapq.heappush(events, (at, next(seq), kind, worker, sent, tries))

    def grant(now: float) -> None:
        nonlocal head_busy
        if head_busy or not queue:
            return
        worker, tries = queue.pop(0)
        _delay, send_at = limiter.reserve()
        head_busy = True
        push(send_at, "send", worker, send_at, tries)

    for worker in range(workers):
        push(0.0, "ready", worker)
    sent_total = throttled = ok_after_warmup = 0
    while events:
        now, _, kind, worker, sent_at, tries = heapq.heappop(events)
        if now > seconds:
            break
        clock.now = now
        if kind == "ready":
            queue.append((worker, tries))
            grant(now)
        elif kind == "send":
            head_busy = False
            grant(now)
            push(now + latency / 2, "arrive", worker, sent_at, tries)
        elif kind == "arrive":
            sent_total += 1
            outcome = "ok" if server.admit(now) else "throttled"
            push(now + latency / 2, outcome, worker, sent_at, tries)
        elif kind == "ok":
            limiter.on_success(sent_at)
            if now > 10:
                ok_after_warmup += 1
            push(now, "ready", worker)
        else:
            throttled += 1
            limiter.on_throttle(sent_at)
            backoff = rng.random() * min(20.0, 0.1 * 2**tries)
            push(now + backoff, "ready", worker, 0.0, tries + 1)
    return ok_after_warmup / (seconds - 10), throttled / sent_total


@pytest.mark.parametrize(
    ("limit", "workers", "latency"),
    [(20, 16, 0.02), (50, 64, 0.005), (100, 64, 0.02), (400, 64, 0.002), (1000, 128, 0.01)],
)
def test_settles_near_an_untold_limit_with_few_throttles(limit: float, workers: int, latency: float) -> None:
    achieved, throttled = simulate(limit, workers=workers, latency=latency, seconds=130, seed=1)
    assert achieved >= 0.9 * limit, f"achieved {achieved:.1f}/s of {limit}/s"
    assert throttled <= 0.05, f"{throttled:.1%} throttled"
    assert math.isfinite(achieved)


@pytest.mark.asyncio
async def test_acquire_queues_waiters_and_a_new_rate_applies_to_the_next_in_line() -> None:
    import anyio

    clock = FakeClock()
    limiter = AdaptiveRateLimiter(RateLimit(requests_per_second=10, burst_seconds=0.01), clock)
    sends: list[float] = []

    async def one() -> None:
        sends.append(await limiter.acquire())
        if len(sends) == 5:
            limiter._set_rate(2)  # as a cut would

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sends)]
    assert gaps[1:4] == [0.1] * 3  # (the first gap is shortened by the burst allowance)
    assert gaps[5:] == [0.5, 0.5]  # the waiters already queued paced at the new rate
