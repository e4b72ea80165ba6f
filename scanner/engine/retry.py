"""Per-request retries: what is worth retrying, jittered backoff, and a retry budget per region.

Retries run on tenacity. A request that succeeds at once never touches it: building and running
a tenacity loop costs ~100 µs, as much as the request itself, so the first attempt is made
directly and tenacity takes over only after a retryable failure (replaying that failure as its
attempt 1, so attempt numbers and waits are exactly tenacity's).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from scanner.clock import Clock
from scanner.engine.config import RetryPolicy
from scanner.errors import (
    AuthError,
    BadRequestError,
    DecodeError,
    NotFoundError,
    RequestTimeout,
    ResponseTooLargeError,
    ServerError,
    ThrottledError,
    TransportError,
)

__all__ = ["RETRYABLE", "JitteredBackoff", "Retrier", "RetryBudget", "is_retryable"]

T = TypeVar("T")

#: Errors worth another attempt. Everything else (auth, bad request, not found, our own
#: configuration errors, bugs) fails at once. Kept as a table so it is tested as one.
RETRYABLE: Final[tuple[type[BaseException], ...]] = (
    ThrottledError,
    ServerError,
    TransportError,
    DecodeError,
)
NEVER_RETRIED: Final[tuple[type[BaseException], ...]] = (
    AuthError,
    BadRequestError,
    NotFoundError,
    ResponseTooLargeError,
)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE) and not isinstance(exc, NEVER_RETRIED)


class RetryBudget:
    """A region's retry allowance (botocore's retry quota): retries spend it, successes refill it."""

    __slots__ = ("_capacity", "_level", "exhausted_count")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._level = capacity
        self.exhausted_count = 0

    @property
    def level(self) -> int:
        return self._level

    def try_spend(self, cost: int) -> bool:
        if cost > self._level:
            self.exhausted_count += 1
            return False
        self._level -= cost
        return True

    def refund(self, amount: int) -> None:
        self._level = min(self._capacity, self._level + amount)

    def __repr__(self) -> str:
        return f"RetryBudget({self._level}/{self._capacity})"


class JitteredBackoff:
    """tenacity ``wait``: full jitter, capped; at least the server's ``x-acs-retry-after``."""

    __slots__ = ("_policy", "_rng")

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def __call__(self, state: RetryCallState) -> float:
        policy = self._policy
        ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** (state.attempt_number - 1))
        delay = self._rng.random() * ceiling
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ThrottledError) and exc.retry_after_ms is not None:
            delay = max(delay, min(policy.max_retry_after, exc.retry_after_ms / 1000))
        return delay


@dataclass(slots=True)
class _CallState:
    spent: int = 0
    budget_exhausted: bool = False


class Retrier:
    """Runs one request with retries under a policy, a region's budget, a clock and an rng.

    ``on_retry(exc, delay)`` is told of every retry about to happen (for statistics).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget,
        *,
        clock: Clock,
        rng: random.Random,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget
        self._clock = clock
        self._wait = JitteredBackoff(policy, rng)
        self._on_retry = on_retry

    def _cost(self, exc: BaseException | None) -> int:
        if isinstance(exc, ThrottledError):
            return self.policy.throttle_cost
        if isinstance(exc, RequestTimeout):
            return self.policy.timeout_cost
        return self.policy.retry_cost

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await attempt()
        except Exception as exc:
            if not is_retryable(exc) or self.policy.max_attempts == 1:
                raise
            first_failure: Exception = exc
        else:
            self.budget.refund(self.policy.success_refund)
            return result
        return await self._retry(attempt, first_failure)

    async def _retry(self, attempt: Callable[[], Awaitable[T]], first_failure: Exception) -> T:
        state = _CallState()
        replayed = False

        async def again() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return await attempt()

        def stop(retry_state: RetryCallState) -> bool:
            if retry_state.attempt_number >= self.policy.max_attempts:
                return True
            exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
            cost = self._cost(exc)
            if not self.budget.try_spend(cost):
                state.budget_exhausted = True
                return True
            state.spent += cost
            return False

        def before_sleep(retry_state: RetryCallState) -> None:
            if self._on_retry is not None and retry_state.outcome is not None:
                exc = retry_state.outcome.exception()
                assert exc is not None
                self._on_retry(exc, retry_state.upcoming_sleep)

        retrying = AsyncRetrying(
            sleep=self._clock.sleep,
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result: T = await retrying(again)
        except Exception as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            if state.budget_exhausted:
                exc.add_note(f"gave up after {attempts} attempts: the region's retry budget is spent")
            elif is_retryable(exc):
                exc.add_note(f"gave up after {attempts} attempts")
            raise
        self.budget.refund(state.spent)
        return result
