"""Retries: the retryable table, exact jittered delays, server hints, the budget, cancellation."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.config import MAX_RETRY_AFTER_S, RetryPolicy, retry_after_seconds
from scanner.engine.retry import Retrier, RetryBudget, is_retryable
from scanner.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    CredentialsError,
    DecodeError,
    NetworkError,
    NotFoundError,
    RequestTimeout,
    ServerError,
    ThrottledError,
)
from scanner.testing import FakeClock


class MaxRandom(random.Random):
    def random(self) -> float:
        return 1.0


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ThrottledError("t"), True),
        (ServerError("s"), True),
        (RequestTimeout("t"), True),
        (NetworkError("n"), True),
        (DecodeError("d"), True),
        (AuthError("a"), False),
        (BadRequestError("b"), False),
        (NotFoundError("n"), False),
        (ConfigError("c"), False),
        (CredentialsError("c"), False),
        (ValueError("bug"), False),
        (asyncio.CancelledError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_what_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


class Flaky:
    def __init__(self, failures: list[BaseException], result: str = "ok") -> None:
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def retrier(policy: RetryPolicy, *, budget: int | None = None, rng: random.Random | None = None):
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    r = Retrier(
        policy,
        RetryBudget(policy.budget if budget is None else budget),
        clock=clock,
        rng=rng or MaxRandom(),
        on_retry=lambda exc, delay: seen.append((type(exc).__name__, delay)),
    )
    return r, clock, seen


@pytest.mark.asyncio
async def test_exponential_delays_capped_with_full_jitter_at_its_maximum() -> None:
    policy = RetryPolicy(max_attempts=12, base_delay=0.1, max_delay=20.0, budget=10_000)
    r, clock, seen = retrier(policy)
    attempt = Flaky([ServerError("x")] * 11)
    assert await r.call(attempt) == "ok"
    assert attempt.calls == 12
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 20.0, 20.0, 20.0])
    assert [name for name, _ in seen] == ["ServerError"] * 11


@pytest.mark.asyncio
async def test_jitter_is_uniform_below_the_ceiling() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, budget=10_000_000)
    rng = random.Random(42)
    delays = []
    for _ in range(2000):
        r, clock, _ = retrier(policy, rng=rng)
        await r.call(Flaky([ServerError("x")]))
        delays.extend(clock.sleeps)
    assert all(0 <= d <= 1.0 for d in delays)
    histogram = [sum(1 for d in delays if i / 4 <= d < (i + 1) / 4) for i in range(4)]
    assert all(400 < count < 600 for count in histogram), histogram


@pytest.mark.asyncio
async def test_a_server_retry_after_hint_is_honoured() -> None:
    policy = RetryPolicy(base_delay=0.1)
    r, clock, _ = retrier(policy)
    await r.call(Flaky([ThrottledError("slow", retry_after_ms=1500)]))
    assert clock.sleeps == [1.5]


@pytest.mark.asyncio
async def test_retry_after_is_capped_at_60_s() -> None:
    r, clock, _ = retrier(RetryPolicy())
    await r.call(Flaky([ThrottledError("slow", retry_after_ms=3_600_000)]))
    assert clock.sleeps == [MAX_RETRY_AFTER_S] == [60.0]


@pytest.mark.asyncio
async def test_an_absurd_retry_after_is_capped_too() -> None:
    # A 400-digit header parses as an int; divided by 1000 it would overflow a float.
    r, clock, _ = retrier(RetryPolicy())
    await r.call(Flaky([ThrottledError("slow", retry_after_ms=10**400)]))
    assert clock.sleeps == [60.0]


@pytest.mark.asyncio
async def test_retry_after_cap_can_be_lowered() -> None:
    policy = RetryPolicy(max_retry_after=2.0)
    r, clock, _ = retrier(policy)
    await r.call(Flaky([ThrottledError("slow", retry_after_ms=3_600_000)]))
    assert clock.sleeps == [2.0]


def test_retry_after_cap_cannot_be_raised() -> None:
    with pytest.raises(ConfigError, match="at most 60 s"):
        RetryPolicy(max_retry_after=61.0)


@pytest.mark.parametrize(
    ("hint_ms", "seconds"),
    [(1, 0.001), (1500, 1.5), (60_000, 60.0), (60_001, 60.0), (10**15, 60.0), (10**400, 60.0)],
)
def test_retry_after_seconds(hint_ms: int, seconds: float) -> None:
    assert retry_after_seconds(hint_ms) == seconds


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [AuthError("a"), BadRequestError("b"), NotFoundError("n")])
async def test_non_retryable_errors_fail_at_once(error: Exception) -> None:
    r, clock, _ = retrier(RetryPolicy())
    attempt = Flaky([error])
    with pytest.raises(type(error)):
        await r.call(attempt)
    assert attempt.calls == 1
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_gives_up_after_max_attempts_and_says_so() -> None:
    r, _clock, _ = retrier(RetryPolicy(max_attempts=3))
    attempt = Flaky([ServerError("a"), ServerError("b"), ServerError("c"), ServerError("d")])
    with pytest.raises(ServerError) as caught:
        await r.call(attempt)
    assert attempt.calls == 3
    assert str(caught.value) == "c"
    assert "gave up after 3 attempts" in caught.value.__notes__[0]


class _Held(ThrottledError):
    """A throttle that can be watched: the Python subclass supports weak references."""


@pytest.mark.asyncio
async def test_a_failure_is_not_held_while_its_retry_waits() -> None:
    # A busy scan has hundreds of throttled requests waiting at once: each must not keep its
    # exception, and through its traceback every frame of the failed attempt, for the whole wait.
    failure = _Held("slow down")
    watch = weakref.ref(failure)
    alive_during_wait: list[bool] = []

    class WatchingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            gc.collect()
            alive_during_wait.append(watch() is not None)
            await super().sleep(seconds)

    r = Retrier(RetryPolicy(max_attempts=2), RetryBudget(100), clock=WatchingClock(), rng=MaxRandom())
    attempt = Flaky([failure])
    del failure
    assert await r.call(attempt) == "ok"
    assert alive_during_wait == [False]


@pytest.mark.asyncio
async def test_the_budget_stops_a_region_in_meltdown() -> None:
    policy = RetryPolicy(max_attempts=10, retry_cost=5, timeout_cost=10, budget=20)
    budget = RetryBudget(20)
    r = Retrier(policy, budget, clock=FakeClock(), rng=MaxRandom())
    attempt = Flaky([RequestTimeout("t"), ServerError("s"), ServerError("s"), ServerError("s")])
    with pytest.raises(ServerError) as caught:
        await r.call(attempt)
    # timeout (10) + server (5) + server (5) = 20 spent; the 4th failure finds the budget empty.
    assert attempt.calls == 4
    assert budget.level == 0
    assert "retry budget" in caught.value.__notes__[0]
    # A request that then fails once gets no retry at all.
    single = Flaky([ServerError("s")])
    with pytest.raises(ServerError):
        await r.call(single)
    assert single.calls == 1


@pytest.mark.asyncio
async def test_successes_refill_the_budget() -> None:
    policy = RetryPolicy(retry_cost=5, success_refund=1, budget=10)
    budget = RetryBudget(10)
    r = Retrier(policy, budget, clock=FakeClock(), rng=MaxRandom())
    await r.call(Flaky([ServerError("s")]))
    assert budget.level == 10  # spent 5, refunded by the retry's success
    budget.try_spend(3)
    await r.call(Flaky([]))
    assert budget.level == 8
    for _ in range(5):
        await r.call(Flaky([]))
    assert budget.level == 10  # never above capacity


@pytest.mark.asyncio
async def test_throttles_cost_little() -> None:
    policy = RetryPolicy(max_attempts=20, throttle_cost=1, budget=10)
    budget = RetryBudget(10)
    r = Retrier(policy, budget, clock=FakeClock(), rng=MaxRandom())
    await r.call(Flaky([ThrottledError("t")] * 9))
    assert budget.level == 10


@pytest.mark.asyncio
async def test_cancellation_is_never_retried() -> None:
    r, _clock, _ = retrier(RetryPolicy())
    attempt = Flaky([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        await r.call(attempt)
    assert attempt.calls == 1


@pytest.mark.asyncio
async def test_cancellation_during_a_retry_propagates() -> None:
    r, _, _ = retrier(RetryPolicy())
    cancel_exc = asyncio.CancelledError
    attempt = Flaky([ServerError("a"), cancel_exc()])
    with pytest.raises(cancel_exc):
        await r.call(attempt)
    assert attempt.calls == 2


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="budget"):
        RetryPolicy(budget=-1)


@pytest.mark.asyncio
async def test_the_budget_pays_for_retries_only_not_for_the_last_failure() -> None:
    policy = RetryPolicy(max_attempts=3, retry_cost=5, budget=100)
    budget = RetryBudget(100)
    r = Retrier(policy, budget, clock=FakeClock(), rng=MaxRandom())
    with pytest.raises(ServerError):
        await r.call(Flaky([ServerError("s")] * 3))
    assert budget.level == 90  # two retries; the third failure is not retried, so not charged


@pytest.mark.asyncio
async def test_a_non_retryable_error_after_retries_ends_it_without_a_refund() -> None:
    policy = RetryPolicy(retry_cost=5, budget=100)
    budget = RetryBudget(100)
    r, clock, _ = retrier(policy)
    r.budget = budget
    with pytest.raises(AuthError) as caught:
        await r.call(Flaky([ServerError("s"), AuthError("a")]))
    assert budget.level == 95
    assert len(clock.sleeps) == 1
    assert not getattr(caught.value, "__notes__", [])  # not "gave up": it was never retryable


# --- invariants of the budget -------------------------------------------------------------------


@given(
    capacity=st.integers(min_value=0, max_value=1000),
    operations=st.lists(
        st.tuples(st.sampled_from(["spend", "refund"]), st.integers(min_value=0, max_value=600)), max_size=100
    ),
)
def test_the_budget_stays_between_empty_and_full(capacity: int, operations: list[tuple[str, int]]) -> None:
    budget = RetryBudget(capacity)
    for operation, amount in operations:
        before = budget.level
        if operation == "spend":
            spent = budget.try_spend(amount)
            assert spent == (amount <= before)
            assert budget.level == (before - amount if spent else before)
        else:
            budget.refund(amount)
            assert budget.level == min(capacity, before + amount)
        assert 0 <= budget.level <= capacity


outcomes = st.lists(
    st.sampled_from([ServerError, RequestTimeout, ThrottledError, NetworkError, AuthError]), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(
    policy=st.builds(
        RetryPolicy,
        max_attempts=st.integers(min_value=1, max_value=10),
        budget=st.integers(min_value=0, max_value=60),
        retry_cost=st.integers(min_value=0, max_value=15),
        timeout_cost=st.integers(min_value=0, max_value=15),
        throttle_cost=st.integers(min_value=0, max_value=15),
        success_refund=st.integers(min_value=0, max_value=5),
    ),
    start=st.integers(min_value=0, max_value=60),
    calls=st.lists(outcomes, min_size=1, max_size=8),
)
def test_a_call_spends_only_what_its_retries_cost_and_a_success_refunds_at_most_that(
    policy: RetryPolicy, start: int, calls: list[list[type[Exception]]]
) -> None:
    budget = RetryBudget(policy.budget)
    budget.try_spend(max(0, policy.budget - start))
    r = Retrier(policy, budget, clock=FakeClock(), rng=MaxRandom())

    async def run_all() -> None:
        for classes in calls:
            before = budget.level
            failures: list[BaseException] = [cls("x") for cls in classes]
            attempt = Flaky(list(failures))

            async def watched(attempt: Flaky = attempt) -> str:
                assert 0 <= budget.level <= budget.capacity
                return await attempt()

            try:
                await r.call(watched)
            except Exception:
                # A failure refunds nothing: the budget paid for each retry made, and no more.
                assert budget.level == before - sum(r.cost(exc) for exc in failures[: attempt.calls - 1])
            else:
                if attempt.calls == 1:
                    assert budget.level == min(budget.capacity, before + policy.success_refund)
                else:  # retries succeeded: what they took is given back, nothing more
                    assert budget.level == before
            assert attempt.calls <= policy.max_attempts
            assert 0 <= budget.level <= budget.capacity

    asyncio.run(run_all())
