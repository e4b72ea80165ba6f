"""The request gate: every request of a scan passes one, in one visible order.

A ``RequestGate`` is the gate of one region. A request, per attempt, takes:

1. a slot of its region (``Concurrency.per_region``): a slow or throttled region cannot hold
   more than its share, and nothing global is held while it waits here or for its pace;
2. its pace, from its (region, action) rate limiter, which every answer is reported to;
3. a slot of the whole scan (``Concurrency.total``);
4. then the call itself, counted; and, still inside the global slot, ``deliver(answer)``.

Delivering inside the global slot is what bounds memory and makes backpressure real: a page's
records are in the consumer's buffer before another request may take its place, so pages fetched
but not handed over never exceed ``Concurrency.total``, and a slow consumer stops the fetching.
Failed attempts are retried by the region's ``Retrier`` (its budget is the region's).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

import anyio

from scanner.clock import Clock
from scanner.eas.models import Page
from scanner.engine.config import Concurrency, RetryPolicy
from scanner.engine.retry import Retrier, RetryBudget
from scanner.engine.stats import LiveStats
from scanner.errors import ThrottledError

__all__ = ["Gates", "Limiter", "LimiterRegistry", "RequestGate", "Slots", "at_once_or_wait"]

T = TypeVar("T")
P = ParamSpec("P")


async def at_once_or_wait(
    nowait: Callable[P, T], wait: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``nowait(...)`` when it can be done at once, else ``await wait(...)``.

    anyio's ``send``, ``receive`` and ``acquire`` always yield to the event loop once, even when
    they could complete at once; on the paths taken for every page and every request, those trips
    cost more than the work. The ``*_nowait`` forms are still fair (they refuse while others are
    queued), and a cancellation lands at the caller's next await.
    """
    try:
        return nowait(*args, **kwargs)
    except anyio.WouldBlock:
        return await wait(*args, **kwargs)


class Slots:
    """A pool of ``tokens`` slots, handed to waiters by priority (the highest first; FIFO within one).

    ``take`` returns at once, without an await, when a slot is free and nobody waits (the path of
    almost every request of a scan that is not saturated). ``async with slots`` takes one at
    priority 0. A waiter cancelled after its slot was handed to it passes the slot on.
    """

    __slots__ = ("_event", "_free", "_order", "_waiters")

    def __init__(self, tokens: int) -> None:
        self._free = tokens
        #: Heap of [-priority, order, event, state]: state 0 waits, 1 was handed a slot, 2 left.
        self._waiters: list[list[Any]] = []
        self._order = 0
        #: The event loop's own ``anyio.Event`` class, once a waiter has made one: ``anyio.Event()``
        #: looks up the running async library on every call, a waiter's largest cost.
        self._event: Callable[[], anyio.Event] = anyio.Event

    def take_nowait(self) -> bool:
        """Take a slot if one is free and nobody waits for one (fair); False if not."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self, priority: int = 0) -> None:
        """Take a slot, waiting behind the waiters of a higher or equal priority."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        self._order += 1
        event = self._event()
        self._event = type(event)
        entry: list[Any] = [-priority, self._order, event, 0]
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2].wait()
        except BaseException:
            if entry[3] == 1:
                self.release()  # handed a slot as it was cancelled: pass it on
            else:
                entry[3] = 2
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter by priority, else to the pool."""
        waiters = self._waiters
        while waiters:
            entry = heapq.heappop(waiters)
            if entry[3] == 0:
                entry[3] = 1
                entry[2].set()
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class Limiter(Protocol):
    """The pace of one (region, action): wait for a send slot, then report how the request went."""

    async def acquire(self) -> float: ...

    def on_success(self, sent_at: float) -> None: ...

    def on_error(self, sent_at: float) -> None: ...

    def on_throttle(self, sent_at: float, retry_after_ms: int | None = ...) -> None: ...


class LimiterRegistry(Protocol):
    """The rate limiters of a scan, one per (region, action)."""

    def get(self, region: str, action: str) -> Limiter: ...


class RequestGate:
    """The gate of one region (see the module docstring). ``request`` is all a caller needs."""

    __slots__ = ("_global_slots", "_limiters", "_region", "_retrier", "_slots", "_stats")

    def __init__(
        self,
        region: str,
        *,
        slots: Slots,
        global_slots: Slots,
        limiters: LimiterRegistry,
        retrier: Retrier,
        stats: LiveStats,
    ) -> None:
        self._region = region
        self._slots = slots
        self._global_slots = global_slots
        self._limiters = limiters
        self._retrier = retrier
        self._stats = stats

    async def request(
        self,
        action: str,
        call: Callable[[], Awaitable[T]],
        deliver: Callable[[T], Awaitable[None]] | None = None,
        priority: int = 0,
    ) -> T:
        """``call()`` through the gate, retried; ``deliver(answer)`` runs inside the global slot.

        Where requests wait for slots, those of a higher ``priority`` go first (a scheduler gives
        the requests on its longest chains of round trips the highest, so they do not end last).
        """
        limiter = self._limiters.get(self._region, action)
        region_slots = self._slots
        global_slots = self._global_slots
        stats = self._stats
        counters = stats.region(self._region)

        async def attempt() -> T:
            await region_slots.take(priority)
            try:
                sent_at = await limiter.acquire()
                await global_slots.take(priority)
                try:
                    stats.requests += 1
                    counters.requests += 1
                    try:
                        answer = await call()
                    except ThrottledError as exc:
                        stats.throttled += 1
                        limiter.on_throttle(sent_at, exc.retry_after_ms)
                        raise
                    except Exception:
                        limiter.on_error(sent_at)  # answered all the same: slow start counts answers
                        raise
                    limiter.on_success(sent_at)
                    if isinstance(answer, Page):
                        stats.bytes_received += answer.body_bytes
                    if deliver is not None:
                        await deliver(answer)  # handed over before the global slot is given back
                finally:
                    global_slots.release()
            finally:
                region_slots.release()
            return answer

        return await self._retrier.call(attempt)


class Gates:
    """The request gates of one scan, one per region, made on first use; they share the global
    slots and the rate limiters, and each has its region's slots and retry budget."""

    def __init__(
        self,
        *,
        concurrency: Concurrency,
        limiters: LimiterRegistry,
        retry_policy: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        stats: LiveStats,
        global_slots: Slots | None = None,
    ) -> None:
        self._concurrency = concurrency
        self._limiters = limiters
        self._retry_policy = retry_policy
        self._clock = clock
        self._rng = rng
        self._stats = stats
        # A multi-account scan shares one set of global slots between its accounts' gates.
        self._global_slots = global_slots if global_slots is not None else Slots(concurrency.total)
        self._gates: dict[str, RequestGate] = {}

    def region(self, name: str) -> RequestGate:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = self._make(name)
        return gate

    def _make(self, region: str) -> RequestGate:
        policy = self._retry_policy
        retrier = Retrier(
            policy, RetryBudget(policy.budget), clock=self._clock, rng=self._rng, on_retry=self._count_retry
        )
        return RequestGate(
            region,
            slots=Slots(self._concurrency.per_region),
            global_slots=self._global_slots,
            limiters=self._limiters,
            retrier=retrier,
            stats=self._stats,
        )

    def _count_retry(self, exc: BaseException, delay: float) -> None:
        self._stats.retries += 1
