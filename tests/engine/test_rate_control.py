"""The rate controller on its own: phases and the control law, as plain function calls.

No clock and no event loop: every event carries its timestamps. The limiter that wires the
controller to a pacer is tested in ``test_pacing.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.config import MAX_RETRY_AFTER_S, RateLimit
from scanner.engine.rate_control import Phase, RateController


def phase_of(control: RateController) -> Phase:
    """The phase now. A check that the phase will change reads it through here: mypy would keep
    ``control.phase`` narrowed by the check across the calls that change it."""
    return control.phase


def send_round(control: RateController, now: float) -> list[float]:
    """Send while slow start's window is open; the send times."""
    sends = []
    while control.window_open():
        control.on_send(now)
        sends.append(now)
    return sends


def test_slow_start_rounds_are_8_then_16_and_unlimited_from_32() -> None:
    control = RateController(RateLimit())
    assert phase_of(control) is Phase.SLOW_START
    rounds = []
    now = 0.0
    while control.phase is Phase.SLOW_START:
        sends = send_round(control, now)
        rounds.append(len(sends))
        now += 0.05
        for sent in sends:
            assert control.on_success(sent, now) is None
    assert rounds == [8, 16]
    assert control.phase is Phase.UNLIMITED
    assert (control.rate, control.window) == (None, None)
    assert control.window_open()


def test_an_error_answers_a_request_of_a_round() -> None:
    control = RateController(RateLimit(slow_start_window=2, slow_start_max_window=8))
    first, _second = send_round(control, 0.0)
    control.on_success(first, 0.01)
    assert not control.window_open()
    control.on_error(0.02)
    assert control.window == 4
    assert control.window_open()
    assert (control.rate, control.cuts) == (None, 0)


def test_a_round_given_up_on_ends_slow_start() -> None:
    control = RateController(RateLimit(slow_start_window=2, slow_start_timeout=1.0))
    first, _lost = send_round(control, 0.0)
    assert control.answer_timeout() == 1.0
    control.on_success(first, 0.001)
    assert control.answer_timeout() == 0.05  # 4 x 1 ms, but not under the 50 ms floor
    control.give_up_round(1.0)
    assert control.phase is Phase.UNLIMITED
    assert control.window_open()


def test_a_configured_ceiling_is_fixed_until_throttled() -> None:
    control = RateController(RateLimit(requests_per_second=50))
    assert (control.phase, control.rate, control.window) == (Phase.FIXED, 50, None)
    for i in range(100):
        control.on_send(i * 0.02)
        assert control.on_success(i * 0.02, i * 0.02 + 0.01) == 50


def test_a_burst_throttle_ramps_from_what_got_through() -> None:
    control = RateController(RateLimit(ramp_doubling_seconds=0.5))
    sends = send_round(control, 0.0)
    for sent in sends[:5]:
        control.on_success(sent, 0.01)
    # Decided when the round's answers are all in: one cut for the round.
    assert [control.on_throttle(sent, 0.01) for sent in sends[5:]] == [None, None, pytest.approx(5.0)]
    assert control.phase is Phase.RAMP
    assert (control.cuts, control.throttles) == (1, 3)
    for step in range(1, 41):
        now = 0.01 + step * 0.025
        control.on_send(now)
        rate = control.on_success(now, now)
    assert rate == pytest.approx(20.0)  # doubled twice in one second


def test_throttles_answered_before_the_rounds_successes_wait_for_them() -> None:
    # The simulator's shape, and an API gateway's: 8 sent against a burst of 5; the 3 throttled
    # are answered at once, the 5 admitted after the API's 80 ms. Deciding at the first throttle
    # would find nothing got through and drop to min_rate (0.5/s), seconds from the limit.
    control = RateController(RateLimit())
    sends = send_round(control, 10.0)
    assert len(sends) == 8
    for sent in sends[5:]:
        assert control.on_throttle(sent, 10.001) is None
        assert control.phase is Phase.SLOW_START
        assert not control.window_open()  # a throttled round sends no more
    for sent in sends[:4]:
        assert control.on_success(sent, 10.08) is None
    rate = control.on_success(sends[4], 10.08)
    assert control.phase is Phase.RAMP
    assert (control.cuts, control.throttles) == (1, 3)
    # What got through: 5 in the scope's first second (5/s; 62.5/s per round trip, the burst).
    assert rate == pytest.approx(5.0)
    # It ramps from there: doubled three times a second later, while the sends keep up.
    for step in range(1, 41):
        now = 10.08 + step * 0.025
        control.on_send(now)
        rate = control.on_success(now, now)
    assert rate == pytest.approx(5.0 * 2 ** (1 / 0.35), rel=0.01)


def test_a_throttled_round_whose_last_answer_is_an_error_is_decided_by_it() -> None:
    control = RateController(RateLimit(slow_start_window=4))
    sends = send_round(control, 0.0)
    control.on_throttle(sends[3], 0.001)
    control.on_success(sends[0], 0.05)
    control.on_success(sends[1], 0.05)
    assert phase_of(control) is Phase.SLOW_START
    assert control.on_error(0.06) == pytest.approx(2.0)
    assert control.phase is Phase.RAMP


def test_a_throttled_round_given_up_on_ramps_from_the_answers_in() -> None:
    control = RateController(RateLimit(slow_start_window=4))
    sends = send_round(control, 0.0)
    control.on_throttle(sends[3], 0.001)
    for sent in sends[:2]:
        control.on_success(sent, 0.05)
    assert not control.window_open()  # one answer lost: the round waits for it...
    assert control.give_up_round(0.25) == pytest.approx(2.0)  # ...until given up on
    assert control.phase is Phase.RAMP


def test_a_throttled_round_where_nothing_got_through_ramps_from_min_rate() -> None:
    control = RateController(RateLimit(slow_start_window=2, min_rate=0.5))
    for sent in send_round(control, 0.0):
        control.on_throttle(sent, 0.001)
    assert (control.phase, control.rate) == (Phase.RAMP, 0.5)


def test_a_ramp_that_meets_no_throttle_for_minutes_does_not_overflow() -> None:
    # 2.0 ** (400 s / 0.35 s) overflows a float: the ramp's doubling is capped.
    control = RateController(RateLimit())
    sends = send_round(control, 0.0)
    control.on_success(sends[0], 0.01)
    for sent in sends[1:]:
        control.on_throttle(sent, 0.01)
    assert control.phase is Phase.RAMP
    for now in (400.0, 4000.0, 1e7):
        control.on_send(now)
        rate = control.on_success(now, now)
        assert rate is not None
        assert math.isfinite(rate)
        assert rate <= 2 * 20  # twice the measured rate (one send, over the meter's shortest span)


def test_a_throttle_of_a_steady_rate_cuts_to_beta_times_what_got_through() -> None:
    control = RateController(RateLimit(beta=0.7, requests_per_second=1000))
    for i in range(100):  # 100/s for a second, 60 of them let through
        control.on_send(i * 0.01)
        if i < 60:
            control.on_success(i * 0.01, i * 0.01)
    rate = control.on_throttle(0.99, 1.0)
    assert control.phase is Phase.CUBIC
    assert rate == pytest.approx(0.7 * 60, rel=0.05)
    assert control.w_max == pytest.approx(60, rel=0.05)


def test_a_burst_after_idle_time_that_is_throttled_does_not_raise_the_rate() -> None:
    control = RateController(RateLimit())
    for i in range(10):  # 10/s for a second, then a throttle: a cut on the curve
        control.on_send(i * 0.1)
        control.on_success(i * 0.1, i * 0.1 + 0.05)
    assert control.on_throttle(0.95, 1.0) == pytest.approx(7.0)
    for i in range(100):  # the curve grows back while requests keep going out...
        control.on_send(1.0 + i * 0.02)
        control.on_success(1.0 + i * 0.02, 1.0 + i * 0.02)
    # ...then idle, then a burst of 60 whose answers all got through, then a throttle: the
    # burst says nothing of the rate, and 60/s would be a rise on a throttle.
    for _ in range(60):
        control.on_send(5.0)
    for _ in range(60):
        control.on_success(5.0, 5.05)
    before = control.rate
    assert before is not None
    assert before < 20
    assert control.on_throttle(5.0, 5.1) == before
    assert control.phase is Phase.RAMP


def test_a_retry_after_pause_is_a_phase_of_its_own_for_60_s_at_most() -> None:
    control = RateController(RateLimit(requests_per_second=10))
    control.on_send(0.0)
    control.on_throttle(0.0, 0.1, retry_after_ms=3_600_000)  # an hour, after a burst
    assert control.paused_until == 0.1 + MAX_RETRY_AFTER_S
    assert control.phase_at(30.0) is Phase.PAUSED
    assert control.phase_at(60.1) is control.phase is Phase.RAMP


def test_an_absurd_retry_after_pauses_60_s() -> None:
    control = RateController(RateLimit())
    control.on_send(0.0)
    control.on_throttle(0.0, 0.1, retry_after_ms=10**400)
    assert control.paused_until == 0.1 + MAX_RETRY_AFTER_S


def test_a_scope_started_from_its_peers_rate_is_on_the_curve_from_the_first_request() -> None:
    control = RateController(RateLimit())
    assert control.start_from(1.0, 50.0)
    assert (control.phase, control.rate, control.window, control.w_max) == (Phase.CUBIC, 1.0, None, 1.0)
    assert control.window_open()
    # Its first throttle is a cut of what got through, not a ramp from a burst, although its
    # first sends (a seeded burst) all went in the last second.
    for _ in range(5):
        control.on_send(50.0)
        control.on_success(50.0, 50.01)
    control.on_send(51.0)
    assert control.on_throttle(51.0, 51.01) == pytest.approx(0.7)
    assert (control.phase, control.cuts) == (Phase.CUBIC, 1)
    assert control.learned == pytest.approx(1.0)


def test_only_a_scope_that_has_sent_nothing_is_started_from_its_peers_rate() -> None:
    control = RateController(RateLimit())
    control.on_send(0.0)
    assert not control.start_from(1.0, 0.0)
    assert control.phase is Phase.SLOW_START
    fixed = RateController(RateLimit(requests_per_second=5))
    assert not fixed.start_from(1.0, 0.0)
    assert (fixed.phase, fixed.rate) == (Phase.FIXED, 5)


def guessing(control: RateController) -> bool:
    """``control.guessing`` now (see ``phase_of``)."""
    return control.guessing


def ramping(now: float = 0.0) -> RateController:
    """A scope whose first round (8 into a burst of 5) was throttled at ``now``: it ramps from 5/s."""
    control = RateController(RateLimit(ramp_doubling_seconds=0.5))
    sends = send_round(control, now)
    for sent in sends[:5]:
        control.on_success(sent, now)
    for sent in sends[5:]:
        control.on_throttle(sent, now)
    assert control.phase is Phase.RAMP
    assert control.rate == pytest.approx(5.0)
    return control


def test_a_guessing_scope_follows_its_peers_rate_once() -> None:
    control = ramping()
    assert guessing(control)  # a ramp from a burst: its own guess
    assert control.follow(1.0, 0.2)
    assert (control.phase, control.rate, control.w_max, control.cuts) == (Phase.CUBIC, 1.0, 1.0, 1)
    assert not guessing(control)
    assert not control.follow(3.0, 0.3)  # once: its own throttles cut it from now on
    assert control.rate == 1.0
    # Throttles of requests sent during the guess, answered after it, cut nothing.
    control.on_send(0.15)
    assert control.on_throttle(0.15, 0.4) == 1.0
    assert control.cuts == 1
    # On the plateau, it probes up; a throttle of a request sent at its rate is a cut.
    for i in range(5):
        control.on_send(0.2 + i)
        control.on_success(0.2 + i, 0.21 + i)
    control.on_send(5.2)
    assert control.on_throttle(5.2, 5.21) == pytest.approx(0.7, rel=0.1)
    assert control.cuts == 2
    assert control.learned == pytest.approx(1.0, rel=0.1)


def test_only_a_guess_gives_way_to_the_peers_rate() -> None:
    fresh = RateController(RateLimit())  # slow start: it has nothing to give up (start_from)
    assert not fresh.guessing
    assert not fresh.follow(1.0, 0.0)
    fixed = RateController(RateLimit(requests_per_second=5))
    assert not fixed.follow(1.0, 0.0)
    assert fixed.rate == 5
    seeded = RateController(RateLimit())
    assert seeded.start_from(2.0, 0.0)
    assert not seeded.guessing
    # Slow start ended unthrottled, then a throttle: a cut of what got through in a second of
    # sending, its own measure, not a ramp from a burst.
    settled = RateController(RateLimit())
    for i in range(60):
        settled.on_send(i * 0.01)
        if i < 30:
            settled.on_success(i * 0.01, i * 0.01)
    settled.on_throttle(0.59, 0.6)
    assert settled.phase is Phase.CUBIC
    assert not settled.guessing
    assert not settled.follow(1.0, 0.7)


def test_the_throttle_that_ends_a_ramp_measures_a_provisional_rate() -> None:
    control = ramping()
    for i in range(1, 9):  # 5/s and up; the server lets 1/s through, 2 of the 8 in 1.6 s
        sent = i * 0.2
        control.on_send(sent)
        if i % 4 == 0:
            control.on_success(sent, sent + 0.01)
    control.on_send(1.8)
    control.on_throttle(1.8, 1.81)
    assert control.phase is Phase.CUBIC
    assert control.learned is None  # the ramp overshot: not a settled measure...
    assert control.provisional == pytest.approx(2 / 1.81)  # ...but what got through since it began
    assert control.guessing


def test_a_slow_scope_cuts_to_what_got_through_since_its_last_cut_not_a_spent_burst() -> None:
    # 1/s with a server burst of 5: after a cut, the tokens saved at the lower rate are spent by
    # the next probe, in a few seconds, which is the meter's whole window at this rate.
    control = RateController(RateLimit())
    assert control.start_from(1.0, 0.0)
    for i in range(10):
        control.on_send(float(i))
        control.on_success(float(i), i + 0.01)
    control.on_send(10.0)
    control.on_throttle(10.0, 10.01)
    sends = [10.5 + i for i in range(16)] + [26.0 + i / 2 for i in range(8)]  # 1/s, then 2/s
    for sent in sends:
        control.on_send(sent)
        control.on_success(sent, sent + 0.01)
    rate = control.rate
    control.on_send(30.2)
    control.on_throttle(30.2, 30.21)
    # 24 through in the 20.2 s since the last cut: 1.19/s. The last 4 s alone read 2/s.
    assert rate is not None
    assert rate > 24 / 20.2
    assert control.w_max == pytest.approx(24 / 20.2)
    assert control.learned == pytest.approx(24 / 20.2)
    assert control.cuts == 2


def test_a_slow_scope_counts_its_rate_over_a_few_requests_not_one_second() -> None:
    # At 1/s, a 1 s window holds one send: young by its span, it read as 20/s, the cap of twice
    # the measured rate let CUBIC run away, and each throttle looked like a burst.
    control = RateController(RateLimit())
    assert control.start_from(1.0, 0.0)
    for i in range(30):
        control.on_send(float(i))
        rate = control.on_success(float(i), i + 0.01)
    assert rate is not None
    assert rate <= 2.5


def test_a_non_adaptive_limit_only_pauses() -> None:
    control = RateController(RateLimit(requests_per_second=10, adaptive=False))
    control.on_send(0.0)
    assert control.on_throttle(0.0, 0.1, retry_after_ms=1500) == 10
    assert control.phase_at(1.0) is Phase.PAUSED
    assert control.phase_at(1.6) is Phase.FIXED
    assert (control.throttles, control.cuts) == (1, 0)


# --- invariants, over any sequence of events ------------------------------------------------


@dataclass(frozen=True)
class Send:
    after: float  # seconds since the previous event
    count: int = 1  # sent at once


@dataclass(frozen=True)
class Answer:
    after: float
    kind: str  # "ok" (``count`` of them at once), "error", "throttle"
    which: int  # index into the requests not yet answered
    retry_after_ms: int | None = None
    count: int = 1


delays = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=0.05),  # bursts
    st.floats(min_value=0.0, max_value=2.0),  # steady sending, idle gaps
    st.floats(min_value=0.0, max_value=10_000.0),  # long silences
)
counts = st.one_of(st.just(1), st.integers(min_value=1, max_value=40))
events = st.one_of(
    st.builds(Send, delays, counts),
    st.builds(
        Answer,
        delays,
        st.sampled_from(["ok", "ok", "ok", "error", "throttle"]),
        st.integers(min_value=0, max_value=1000),
        st.one_of(st.none(), st.integers(min_value=1, max_value=10**12), st.just(10**400)),
        counts,
    ),
)
configs = st.sampled_from(
    [
        RateLimit(),
        RateLimit(slow_start_window=1, slow_start_max_window=2),
        RateLimit(requests_per_second=20),
        RateLimit(requests_per_second=3, min_rate=1, cooldown_seconds=0.1),
        RateLimit(requests_per_second=20, adaptive=False),
        RateLimit(beta=0.3, scale=5, ramp_doubling_seconds=0.05),
    ]
)


def ok_in_the_last_second(successes: list[float], now: float) -> int:
    return sum(1 for at in successes if at >= now - 1.0)


def check_phase(control: RateController) -> None:
    phase = control.phase
    assert (control.window is not None) == (phase is Phase.SLOW_START)
    assert (control.rate is None) == (phase in (Phase.SLOW_START, Phase.UNLIMITED))


@settings(max_examples=300, deadline=None)
@given(
    configs,
    st.lists(events, max_size=200),
    st.one_of(st.none(), st.floats(min_value=0.01, max_value=1e6)),  # a rate learned by peers
)
def test_rates_stay_in_bounds_and_a_throttle_never_raises_them(
    config: RateLimit, sequence: list[Send | Answer], seed: float | None
) -> None:
    control = RateController(config)
    if seed is not None:
        seeded = control.start_from(seed, 0.0)
        assert seeded is (config.requests_per_second is None)
    ceiling = config.requests_per_second
    now = 0.0
    in_flight: list[float] = []
    successes: list[float] = []
    for event in sequence:
        now += event.after
        slow_start = control.phase is Phase.SLOW_START
        if isinstance(event, Send):
            for _ in range(event.count):
                control.on_send(now)
                in_flight.append(now)
        elif in_flight:
            sent_at = in_flight.pop(event.which % len(in_flight))
            before = control.rate
            if event.kind == "ok":
                control.on_success(sent_at, now)
                successes.append(now)
                for _ in range(min(event.count - 1, len(in_flight))):
                    control.on_success(in_flight.pop(), now)
                    successes.append(now)
            elif event.kind == "error":
                control.on_error(now)
                if not (slow_start and control.phase is Phase.RAMP):
                    assert control.rate == before  # an error says nothing of the rate...
            else:
                paused_until = control.paused_until
                control.on_throttle(sent_at, now, event.retry_after_ms)
                if before is not None:
                    assert control.rate is not None
                    assert control.rate <= before
                assert control.paused_until - now <= MAX_RETRY_AFTER_S + 1e-9  # (float rounding)
                assert control.paused_until >= paused_until  # a pause is never shortened
            if slow_start and control.phase is Phase.RAMP:
                # ...except as the last answer of a throttled slow-start round, which decides it
                # from what got through, once every answer is in.
                assert not in_flight
                assert control.rate is not None
                assert control.rate <= max(config.min_rate, ok_in_the_last_second(successes, now))
        rate = control.rate
        if rate is not None:
            assert math.isfinite(rate)
            assert rate >= config.min_rate > 0
            if ceiling is not None:
                assert rate <= ceiling
        check_phase(control)
        assert 0 < control.answer_timeout() <= config.slow_start_timeout
        assert control.phase_at(now) is (Phase.PAUSED if now < control.paused_until else control.phase)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ok", "error", "throttle"]), st.floats(min_value=0.0, max_value=3.0)),
        min_size=1,
        max_size=8,
    )
)
def test_a_slow_start_round_is_decided_only_once_all_its_answers_are_in(
    answers: list[tuple[str, float]],
) -> None:
    # Any order, any latencies (throttles at once, or after the successes): nothing is decided,
    # and nothing more is sent, until the round's last answer. Then a throttled round ramps
    # from what got through in the last second, and one without a throttle doubles.
    config = RateLimit(slow_start_window=len(answers))
    control = RateController(config)
    assert len(send_round(control, 0.0)) == len(answers)
    answers = sorted(answers, key=lambda answer: answer[1])
    for kind, at in answers:
        assert (control.phase, control.rate) == (Phase.SLOW_START, None)
        assert not control.window_open()
        if kind == "ok":
            control.on_success(0.0, at)
        elif kind == "error":
            control.on_error(at)
        else:
            control.on_throttle(0.0, at)
    end = answers[-1][1]
    got_through = sum(1 for kind, at in answers if kind == "ok" and at >= end - 1.0)
    if any(kind == "throttle" for kind, _ in answers):
        assert control.phase is Phase.RAMP
        assert control.rate is not None
        assert config.min_rate <= control.rate <= max(config.min_rate, got_through)
        assert control.cuts == 1
    else:
        assert (control.phase, control.window, control.cuts) == (Phase.SLOW_START, 2 * len(answers), 0)
