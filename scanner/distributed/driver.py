"""The driver of a distributed scan: hands units to workers one at a time, retries lost ones, and
collects the workers' reports as they finish.

It knows nothing of Ray: a worker is anything with the ``WorkerHandle`` shape (``scanner.distributed.
ray_engine`` adapts Ray actors to it; tests use in-process fakes). Every worker loop runs in the
driver's own task group:

- **Dynamic hand-out.** Each worker takes the next unit when it has finished its last one, from one
  queue ordered biggest first (``order_units``), so a huge unit starts early and the others spread
  over whichever workers are free.
- **Lost workers.** When a worker's process dies mid-unit (``WorkerLost``), the unit goes back to the
  front of the queue, to be taken by a worker that has not tried it yet when there is one, and the
  worker waits for its restart (``start``) before taking more. Any other error of a unit counts as a
  failed attempt too. After ``max_attempts`` attempts, the unit is given to ``give_up``, which
  commits it ``incomplete`` in the scan directory: exactly what a local scan records for a region
  it could not finish. A unit whose workers are all gone for good ends the same way.
- **Progress.** While a unit runs, a worker that has ``progress()`` (the Ray workers do) is asked
  for the unit's live counters every ``progress_interval`` seconds (0.2 s), each answer an
  ``UnitProgress`` event: a display built on the events moves page by page, as a local scan's does,
  at the cost of one small call per busy worker per interval, whatever the number of pages.
- **Cancellation.** Cancelling the driver cancels every ``run`` in flight (the worker discards the
  unit's uncommitted part, so its previous entry stands) and then stops every worker, shielded, so
  nothing keeps running after ``drive`` returns or raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit, order_units
from scanner.errors import ScannerError
from scanner.validation import require_positive

__all__ = [
    "DriverEvent",
    "GiveUp",
    "UnitFinished",
    "UnitProgress",
    "UnitRetried",
    "UnitStarted",
    "WorkerGone",
    "WorkerHandle",
    "WorkerLost",
    "drive",
]

logger = logging.getLogger("scanner.distributed")

#: How long a stop or a cancelled unit may take before the worker is abandoned (seconds).
STOP_GRACE_S = 10.0
#: How often a busy worker is asked for its unit's live counters (seconds).
PROGRESS_INTERVAL_S = 0.2


class WorkerLost(ScannerError):
    """A worker's process died or cannot be reached (it may come back: see ``WorkerHandle.start``)."""


class WorkerHandle(Protocol):
    """One worker, as the driver sees it."""

    index: int

    async def start(self) -> WorkerInfo:
        """Wait until the worker is ready (again, after a restart); ``WorkerLost`` if it is gone for good."""
        ...

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        """Scan ``unit`` on the worker; ``WorkerLost`` when its process died meanwhile."""
        ...

    async def stop(self) -> None:
        """Stop the worker for good (called once, on every way out of ``drive``)."""
        ...

    # Optional: ``async def progress(self) -> UnitLive | None``, the live counters of the unit it
    # is running (see ``UnitProgress``); a worker without it reports each unit when it ends.


@dataclass(frozen=True, slots=True)
class UnitStarted:
    unit: WorkUnit
    worker: WorkerInfo
    attempt: int


@dataclass(frozen=True, slots=True)
class UnitFinished:
    report: UnitReport


@dataclass(frozen=True, slots=True)
class UnitRetried:
    unit: WorkUnit
    worker: WorkerInfo
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class WorkerGone:
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class UnitProgress:
    """The live counters of a unit still running (its worker's latest answer); they replace the
    previous ones of the same unit and attempt."""

    live: UnitLive
    worker: WorkerInfo


DriverEvent = UnitStarted | UnitFinished | UnitRetried | WorkerGone | UnitProgress

#: Ends a unit no worker could finish: commits it incomplete with these failures, returns its report.
GiveUp = Callable[[WorkUnit, int, list[dict[str, Any]]], Awaitable[UnitReport]]


@dataclass(slots=True)
class _Pending:
    unit: WorkUnit
    attempt: int = 1
    tried_by: frozenset[int] = frozenset()
    errors: list[str] = field(default_factory=list)


class _Queue:
    def __init__(self, units: Sequence[WorkUnit]) -> None:
        self.items = [_Pending(unit) for unit in order_units(units)]
        self.in_flight = 0
        self.alive = 0
        #: The accounts each worker has taken units of.
        self.accounts: dict[int, set[str | None]] = {}
        self._changed = anyio.Event()

    def take(self, index: int) -> _Pending | None:
        """The next unit for worker ``index``, in the queue's order (biggest first), preferring:

        1. a unit of an account this worker has scanned already (its credentials are cached there:
           no new AssumeRole), then
        2. a unit of an account no worker has touched yet (a worker per account while there are
           fresh accounts), then
        3. any unit this worker has not tried (a retried unit goes to another worker), then
        4. any unit.

        In a single-account scan every unit has the same account, so this is 3, then 4.
        """
        mine = self.accounts.setdefault(index, set())
        touched: set[str | None] = set().union(*self.accounts.values())
        rules: tuple[Callable[[_Pending], bool], ...] = (
            lambda item: item.unit.account in mine,
            lambda item: item.unit.account not in touched,
            lambda item: True,
        )
        for rule in rules:
            for position, item in enumerate(self.items):
                if index not in item.tried_by and rule(item):
                    return self._give(index, position)
        return self._give(index, 0) if self.items else None

    def _give(self, index: int, position: int) -> _Pending:
        item = self.items.pop(position)
        self.accounts[index].add(item.unit.account)
        return item

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        await self._changed.wait()


async def drive(
    units: Sequence[WorkUnit],
    workers: Sequence[WorkerHandle],
    *,
    give_up: GiveUp,
    max_attempts: int = 3,
    on_event: Callable[[DriverEvent], None] | None = None,
    progress_interval: float = PROGRESS_INTERVAL_S,
) -> list[UnitReport]:
    """Scan ``units`` on ``workers``; every unit's report, in the order they finished.

    ``on_event`` is called (on the driver's loop; keep it quick) as units start, finish and are
    retried, and when a worker is gone for good, and with each unit's live counters while it runs
    (``UnitProgress``, every ``progress_interval`` seconds): the progress of the scan.
    """
    require_positive("max_attempts", max_attempts, integer=True)
    require_positive("progress_interval", progress_interval)
    if not workers:
        raise ScannerError("a distributed scan needs at least one worker")
    queue = _Queue(units)
    reports: list[UnitReport] = []

    def emit(event: DriverEvent) -> None:
        if isinstance(event, UnitFinished):
            reports.append(event.report)
        if on_event is not None:
            on_event(event)

    async def end(item: _Pending, reason: str) -> None:
        failure = {"region": item.unit.region, "service": None, "code": "WorkerLost", "message": reason}
        if item.unit.account is not None:
            failure["account"] = item.unit.account
        with anyio.CancelScope(shield=True):
            report = await give_up(item.unit, item.attempt, [failure])
        emit(UnitFinished(report))

    async def watch(
        progress: Callable[[], Awaitable[UnitLive | None]], item: _Pending, info: WorkerInfo
    ) -> None:
        while True:
            await anyio.sleep(progress_interval)
            try:
                live = await progress()
            except Exception:  # a worker dying: its run() says so
                continue
            if live is not None and live.unit == item.unit and live.attempt == item.attempt:
                emit(UnitProgress(live, info))

    async def run_watched(handle: WorkerHandle, item: _Pending, info: WorkerInfo) -> UnitReport:
        progress: Callable[[], Awaitable[UnitLive | None]] | None = getattr(handle, "progress", None)
        if progress is None:
            return await handle.run(item.unit, item.attempt)
        outcome: UnitReport | Exception
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, progress, item, info)
            try:
                outcome = await handle.run(item.unit, item.attempt)
            except Exception as exc:  # raised below, outside the task group (not in a group)
                outcome = exc
            tg.cancel_scope.cancel()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def work(handle: WorkerHandle) -> None:
        try:
            info = await handle.start()
        except WorkerLost as exc:
            emit(WorkerGone(handle.index, str(exc)))
            return
        queue.alive += 1
        try:
            while True:
                item = queue.take(handle.index)
                if item is None:
                    if queue.in_flight == 0:
                        queue.notify()  # the others waiting for a retry see there is none coming
                        return
                    await queue.changed()
                    continue
                queue.in_flight += 1
                emit(UnitStarted(item.unit, info, item.attempt))
                lost = False
                try:
                    report = await run_watched(handle, item, info)
                except WorkerLost as exc:
                    lost, error = True, f"worker {handle.index} (pid {info.pid}) was lost: {exc}"
                except Exception as exc:
                    error = f"worker {handle.index} (pid {info.pid}) failed: {type(exc).__name__}: {exc}"
                else:
                    queue.in_flight -= 1
                    emit(UnitFinished(report))
                    queue.notify()
                    continue
                logger.warning("unit %s, attempt %d: %s", item.unit, item.attempt, error)
                item.errors.append(error)
                if item.attempt < max_attempts:
                    emit(UnitRetried(item.unit, info, item.attempt, error))
                    retry = _Pending(item.unit, item.attempt + 1, item.tried_by | {handle.index}, item.errors)
                    queue.items.insert(0, retry)
                    queue.in_flight -= 1
                    queue.notify()
                else:
                    try:
                        await end(item, f"gave up after {item.attempt} attempts: {error}")
                    finally:
                        queue.in_flight -= 1
                        queue.notify()
                if lost:
                    try:
                        info = await handle.start()
                    except WorkerLost as exc:
                        emit(WorkerGone(handle.index, str(exc)))
                        return
        finally:
            queue.alive -= 1
            queue.notify()

    try:
        async with anyio.create_task_group() as tg:
            for handle in workers:
                tg.start_soon(work, handle)
        # Every worker is gone for good while units remain: no one can scan them.
        for item in queue.items:
            await end(item, "no worker left to scan it: " + ("; ".join(item.errors) or "all workers lost"))
        queue.items.clear()
    finally:
        with anyio.CancelScope(shield=True):
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for handle in workers:
                    tg.start_soon(_stop, handle)
            logger.debug("stopped %d workers in %.2f s", len(workers), time.monotonic() - started)
    return reports


async def _stop(handle: WorkerHandle) -> None:
    with anyio.move_on_after(STOP_GRACE_S):
        try:
            await handle.stop()
        except Exception as exc:  # a worker that cannot even be stopped must not hide the others
            logger.warning("stopping worker %d: %s", handle.index, exc)
