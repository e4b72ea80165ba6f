"""Per-request retries: what is worth retrying, jittered backoff, and a retry budget per region.

One loop decides each retry the way botocore's ``RetryHandler.needs_retry`` does: is the error
retryable, are attempts left, then spend from the region's ``RetryBudget`` (the one step that
changes state), then the wait. A request that succeeds at once costs one ``await`` and a refund.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from scanner.clock import Clock
from scanner.engine.config import RetryPolicy, retry_after_seconds
from scanner.errors import (
    DecodeError,
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


def is_retryable(exc: BaseException) -> bool:
    # A body over the size cap is a TransportError, but the same request would get the same answer.
    return isinstance(exc, RETRYABLE) and not isinstance(exc, ResponseTooLargeError)


class RetryBudget:
    """A region's retry allowance (botocore's retry quota): retries spend it, successes refill it.

    Its level stays between 0 and its capacity.
    """

    __slots__ = ("_level", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._level = capacity

    @property
    def level(self) -> int:
        return self._level

    def try_spend(self, cost: int) -> bool:
        """Take ``cost`` if the budget holds it; False (and nothing taken) if not."""
        if cost > self._level:
            return False
        self._level -= cost
        return True

    def refund(self, amount: int) -> None:
        self._level = min(self.capacity, self._level + amount)

    def __repr__(self) -> str:
        return f"RetryBudget({self._level}/{self.capacity})"


class JitteredBackoff:
    """Full jitter, capped; at least the server's ``x-acs-retry-after`` (itself capped at 60 s)."""

    __slots__ = ("_policy", "_rng")

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def delay(self, failed_attempt: int, exc: BaseException) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1 is the first) failed."""
        policy = self._policy
        ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** (failed_attempt - 1))
        delay = self._rng.random() * ceiling
        if isinstance(exc, ThrottledError) and exc.retry_after_ms is not None:
            delay = max(delay, min(policy.max_retry_after, retry_after_seconds(exc.retry_after_ms)))
        return delay


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
        self._backoff = JitteredBackoff(policy, rng)
        self._on_retry = on_retry

    def cost(self, exc: BaseException) -> int:
        """What a retry after ``exc`` takes from the budget."""
        if isinstance(exc, ThrottledError):
            return self.policy.throttle_cost
        if isinstance(exc, RequestTimeout):
            return self.policy.timeout_cost
        return self.policy.retry_cost

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()``, retried per the policy; the last failure is raised, with a note."""
        try:
            result = await attempt()
        except Exception as exc:
            failure = exc
        else:
            self.budget.refund(self.policy.success_refund)
            return result
        attempts = 1
        spent = 0
        while True:
            # The decision, in botocore's order: retryable, attempts left, budget, then the wait.
            if not is_retryable(failure):
                raise failure
            if attempts >= self.policy.max_attempts:
                if attempts > 1:
                    failure.add_note(f"gave up after {attempts} attempts")
                raise failure
            cost = self.cost(failure)
            if not self.budget.try_spend(cost):
                failure.add_note(f"gave up after {attempts} attempts: the region's retry budget is spent")
                raise failure
            spent += cost
            delay = self._backoff.delay(attempts, failure)
            if self._on_retry is not None:
                self._on_retry(failure, delay)
            # The failure is decided on: its traceback (and the frames it keeps alive) must not
            # stay in memory for the whole wait, once per throttled request of a busy scan.
            del failure
            await self._clock.sleep(delay)
            attempts += 1
            try:
                result = await attempt()
            except Exception as exc:
                failure = exc
            else:
                self.budget.refund(spent)  # a success after retries gives back what they took
                return result
