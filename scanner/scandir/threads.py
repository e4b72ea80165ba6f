"""Blocking steps of a scan directory in a worker thread, never cut in two by a cancellation.

``anyio.to_thread.run_sync`` shields its thread from anyio's cancellation (a cancel scope, a task
group's, ``fail_after``): the call returns once the thread has ended and the cancellation comes at the
next checkpoint. asyncio's own cancellation goes through that shield, by design (anyio lets a native
cancellation propagate): ``Task.cancel()``, ``asyncio.timeout()``, ``asyncio.wait_for()``, the first
Ctrl-C under ``asyncio.run()``, an ``asyncio.TaskGroup`` cancelling its other tasks, ``ray.cancel`` of
an async actor's call. Each raises ``CancelledError`` at the await at once, while the thread goes on,
and its result is dropped. A part writer that then discarded its part, released its lock or wrote on,
would do it while its own thread was still committing, opening or encoding that part.

``run_to_end`` keeps the two in order. A cancellation that lands before the thread has started the
function means it never starts (the caller sees the cancellation, nothing was done). Once it has
started, the caller waits for it to end, whatever cancels it meanwhile, and only then sees the
cancellation (or the function's own error). The function must leave its effects on the object it
works on (its result is lost to a cancelled caller).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final, Generic, Literal, TypeVar, TypeVarTuple, Unpack

import anyio

__all__ = ["run_to_end"]

T = TypeVar("T")
Args = TypeVarTuple("Args")


class _NotRun(Exception):
    """The call was cancelled before its thread started it (the caller has moved on)."""


class _Call(Generic[T, *Args]):
    """``func(*args)`` as a worker thread runs it, and whether it started (under a lock)."""

    __slots__ = ("_args", "_func", "_lock", "_state", "ended")

    def __init__(self, func: Callable[[Unpack[Args]], T], args: tuple[*Args]) -> None:
        self._func: Final = func
        self._args: Final = args
        self._lock: Final = threading.Lock()
        self._state: Literal["waiting", "running", "abandoned"] = "waiting"
        self.ended: Final = threading.Event()

    def __call__(self) -> T:
        """In the worker thread."""
        with self._lock:
            if self._state == "abandoned":
                raise _NotRun
            self._state = "running"
        try:
            return self._func(*self._args)
        finally:
            self.ended.set()

    def abandon(self) -> bool:
        """From the cancelled caller: True if the call had not started (and now never will)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "abandoned"
            return self._state == "abandoned"


async def run_to_end(func: Callable[[Unpack[Args]], T], *args: *Args) -> T:
    """``func(*args)`` in a worker thread; once started, waited for whatever cancels the caller."""
    call = _Call(func, args)
    try:
        return await anyio.to_thread.run_sync(call)
    except BaseException:
        # Cancelled before the thread started the call: it never will. Cancelled while it ran (or its
        # own error): wait for the thread to end, then raise.
        if not call.abandon():
            other = await _wait(call.ended)
            if other is not None:
                raise other  # noqa: B904  (the cancellation is its __context__)
        raise


async def _wait(ended: threading.Event) -> BaseException | None:
    """Until ``ended`` is set, whatever cancels the caller meanwhile; the first other exception."""
    other: BaseException | None = None
    while not ended.is_set():
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(ended.wait)
        except GeneratorExit:  # the coroutine is being closed: it cannot await any more
            raise
        except anyio.get_cancelled_exc_class():  # cancelled again (a second Task.cancel()): wait on
            continue
        except BaseException as exc:  # KeyboardInterrupt, say: raised once the thread has ended
            other = other or exc
    return other
