"""The gate's slots: taken at once when free, handed out by priority, passed on when cancelled."""

from __future__ import annotations

import anyio
import pytest

from scanner.engine.gate import Slots


@pytest.mark.asyncio
async def test_a_free_slot_is_taken_at_once_and_a_taken_one_waits() -> None:
    slots = Slots(1)
    assert slots.take_nowait()
    assert not slots.take_nowait()
    slots.release()
    async with slots:
        assert not slots.take_nowait()
    assert slots.take_nowait()


@pytest.mark.asyncio
async def test_waiters_get_slots_by_priority_then_in_order() -> None:
    slots = Slots(1)
    await slots.take()
    order: list[str] = []

    async def waiter(name: str, priority: int) -> None:
        await slots.take(priority)
        order.append(name)
        slots.release()

    async with anyio.create_task_group() as tg:
        for name, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 9)):
            tg.start_soon(waiter, name, priority)
            await anyio.wait_all_tasks_blocked()
        slots.release()
    assert order == ["e", "b", "d", "a", "c"]
    assert slots.take_nowait()


@pytest.mark.asyncio
async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    slots = Slots(1)
    await slots.take()
    got: list[str] = []

    async def waiter(name: str, priority: int, scope: anyio.CancelScope) -> None:
        with scope:
            await slots.take(priority)
            got.append(name)
            slots.release()

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "cancelled", 9, first)
        tg.start_soon(waiter, "served", 0, second)
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        slots.release()
    assert got == ["served"]
    assert slots.take_nowait()
    assert not slots.take_nowait()


@pytest.mark.asyncio
async def test_a_slot_handed_to_a_waiter_cancelled_at_once_is_not_lost() -> None:
    slots = Slots(1)
    await slots.take()
    got: list[str] = []

    async def waiter(name: str, priority: int) -> None:
        await slots.take(priority)
        got.append(name)
        slots.release()

    async with anyio.create_task_group() as tg, anyio.create_task_group() as inner:
        inner.start_soon(waiter, "first", 9)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "next", 0)
        await anyio.wait_all_tasks_blocked()
        slots.release()  # handed to "first", cancelled before it runs: kept or passed on
        inner.cancel_scope.cancel()
    assert "next" in got
    assert slots.take_nowait()
    assert not slots.take_nowait()
