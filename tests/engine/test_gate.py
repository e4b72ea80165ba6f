"""The request gate: the order of its layers, deliver inside the global slot, and its helpers."""

from __future__ import annotations

import random
from collections.abc import Iterator

import anyio
import pytest

from scanner.engine.config import Concurrency, RateLimit, RetryPolicy
from scanner.engine.gate import Gates, at_once_or_wait
from scanner.engine.pacing import ClientRateLimiters
from scanner.engine.stats import LiveStats
from scanner.errors import AuthError, ServerError, unwrap_group
from scanner.testing import FakeClock


def gates(total: int = 1, per_region: int = 4, attempts: int = 3) -> tuple[Gates, LiveStats]:
    clock = FakeClock()
    stats = LiveStats(0.0)
    made = Gates(
        concurrency=Concurrency(total=total, per_region=per_region),
        limiters=ClientRateLimiters(RateLimit(), clock),
        retry_policy=RetryPolicy(max_attempts=attempts),
        clock=clock,
        rng=random.Random(0),
        stats=stats,
    )
    return made, stats


@pytest.mark.asyncio
async def test_a_page_is_delivered_before_the_global_slot_is_given_back() -> None:
    made, stats = gates(total=1)
    gate = made.region("cn-shanghai")
    events: list[str] = []
    release = anyio.Event()

    async def call(name: str) -> str:
        events.append(f"call {name}")
        return name

    async def deliver(answer: str) -> None:
        events.append(f"deliver {answer}")
        if answer == "a":
            await release.wait()  # a slow consumer: the slot stays taken
        events.append(f"delivered {answer}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.request, "ListServiceInstances", lambda: call("a"), deliver)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(gate.request, "ListServiceInstances", lambda: call("b"), deliver)
        await anyio.wait_all_tasks_blocked()
        assert events == ["call a", "deliver a"]  # b waits for the one global slot
        release.set()
    assert events == ["call a", "deliver a", "delivered a", "call b", "deliver b", "delivered b"]
    assert stats.requests == stats.region("cn-shanghai").requests == 2


@pytest.mark.asyncio
async def test_a_gate_retries_what_is_retryable_and_counts_it() -> None:
    made, stats = gates(attempts=3)
    gate = made.region("cn-beijing")
    answers: Iterator[ServerError | str] = iter(
        [ServerError("x", status=503), ServerError("x", status=503), "ok"]
    )

    async def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await gate.request("ListServices", call) == "ok"
    assert stats.requests == 3
    assert stats.retries == 2
    assert made.region("cn-beijing") is gate


@pytest.mark.asyncio
async def test_at_once_or_wait_waits_only_when_it_must() -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    async with send, receive:
        await at_once_or_wait(send.send_nowait, send.send, 1)
        assert await at_once_or_wait(receive.receive_nowait, receive.receive) == 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(at_once_or_wait, receive.receive_nowait, receive.receive)
            await anyio.wait_all_tasks_blocked()
            await send.send(2)


def test_one_exception_group_policy() -> None:
    auth = AuthError("a")
    assert unwrap_group(auth) is auth
    assert unwrap_group(ExceptionGroup("g", [auth])) is auth
    nested = ExceptionGroup("g", [ExceptionGroup("h", [auth]), AuthError("b")])
    assert unwrap_group(nested) is auth  # one type: the first of them
    mixed = ExceptionGroup("g", [auth, ServerError("s")])
    assert unwrap_group(mixed) is mixed  # a different error is never hidden
