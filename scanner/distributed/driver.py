"""The driver of a distributed scan: hands units to workers as they have room, retries lost ones,
and collects the workers' reports as they finish.

It knows nothing of Ray: a worker is anything with the ``WorkerHandle`` shape (``scanner.distributed.
ray_engine`` adapts Ray actors to it; tests use in-process fakes). Every worker loop runs in the
driver's own task group:

- **Dynamic hand-out, several units a worker.** A worker has ``units_per_worker`` slots: whenever
  one is free, it takes the next unit, from one queue ordered biggest first (``order_units``), so a
  huge unit starts early and the others spread over whichever workers have room. Never more than
  that many units are in flight on a worker, and nothing is assigned ahead: a unit waits in the
  driver's queue until a slot takes it. A unit is paced by its own API quota (its (account, region,
  action)), so one unit at a time leaves a worker idle most of the time; several keep it busy.
  A worker also holds at most its even share of the work left (``_Queue.has_room``), by the
  units' sizes when they are known: the first worker up does not take every big unit.
- **Lost workers.** When a worker's process dies (``WorkerLost``), every unit it had in flight ends
  with ``WorkerLost``: each goes back to the front of the queue (biggest first), to be taken by a
  worker that has not tried it yet when there is one. The worker takes nothing more until all its
  units have ended, then waits for its restart (``start``). Any other error of a unit counts as a
  failed attempt too. After ``max_attempts`` attempts, the unit is given to ``give_up``, which
  commits it ``incomplete`` in the scan directory: exactly what a local scan records for a region
  it could not finish. A unit whose workers are all gone for good ends the same way.
- **Progress.** While a worker has units in flight, a worker that has ``progress()`` (the Ray
  workers do) is asked for their live counters every ``progress_interval`` seconds (0.2 s): one
  call per busy worker, whatever its units and their pages, each unit in the answer an
  ``UnitProgress`` event (answers of units no longer in flight there are dropped), so a display
  built on the events moves page by page, as a local scan's does.
- **Cancellation.** Cancelling the driver cancels every ``run`` in flight (the worker discards the
  unit's uncommitted part, so its previous entry stands) and then stops every worker, shielded, so
  nothing keeps running after ``drive`` returns or raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit, order_units
from scanner.errors import ScannerError
from scanner.validation import require_positive

__all__ = [
    "DriverEvent",
    "GiveUp",
    "ProgressAnswer",
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
#: How often a busy worker is asked for its units' live counters (seconds).
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

    # With ``units_per_worker`` > 1, ``run`` is called again before the previous calls return:
    # the worker runs those units at once.
    # Optional: ``async def progress(self) -> ProgressAnswer``, the live counters of the units it
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

#: A worker's answer to ``progress()``: the live counters of its units running now (one, several,
#: or None: none has started listing).
ProgressAnswer = UnitLive | Sequence[UnitLive] | None

#: Ends a unit no worker could finish: commits it incomplete with these failures, returns its report.
GiveUp = Callable[[WorkUnit, int, list[dict[str, Any]]], Awaitable[UnitReport]]


@dataclass(slots=True)
class _Pending:
    unit: WorkUnit
    attempt: int = 1
    tried_by: frozenset[int] = frozenset()
    errors: list[str] = field(default_factory=list)


class _Queue:
    """The units not handed out yet, and what the workers hold; every change wakes the waiting."""

    def __init__(self, units: Sequence[WorkUnit], per_worker: int, workers: Iterable[int]) -> None:
        self.items = [_Pending(unit) for unit in order_units(units)]
        self.per_worker = per_worker
        known = [item.unit.size for item in self.items if item.unit.size is not None]
        #: The weight of a unit of unknown size: the known ones' mean (all unknown: all weigh 1).
        self._unknown_weight = max(1, sum(known) // len(known)) if known else 1
        #: Units handed out and not ended yet, on every worker, and their weight.
        self.in_flight = 0
        self.in_flight_weight = 0
        #: The weight of the units not handed out yet.
        self.queued_weight = sum(self.weight(item) for item in self.items)
        #: Workers not gone for good (starting, restarting or taking units).
        self.alive: set[int] = set(workers)
        #: Workers that share the units: taking them now, or starting for the first time.
        self.sharing: set[int] = set(self.alive)
        #: Workers taking units now (started, not lost), each with its units in flight.
        self.ready: dict[int, dict[int, _Pending]] = {}
        #: The accounts each worker has taken units of.
        self.accounts: dict[int, set[str | None]] = {}
        self._changed = anyio.Event()

    def weight(self, item: _Pending) -> int:
        """A unit's part of the work: its size (records) when known, at least 1."""
        size = item.unit.size
        return self._unknown_weight if size is None else max(1, size)

    def has_room(self, index: int) -> bool:
        """Whether worker ``index`` may take a unit now: it has a free slot, and holds less than its
        even share of the work left (the weight of the units queued and in flight, over the workers
        sharing them, those still starting included); a worker with none may always take one.

        Without sizes every unit weighs 1: the share is one of units, which binds once the units
        left are fewer than the workers' slots (so the first worker up does not take them all).
        With sizes it binds on the work: the first worker up, or the one that happened to free its
        slots first, stops at half the records (two workers), not at 8 of the biggest units, which
        on a worker held by its CPU are a static split of most of the scan (measured: 64% of the
        records on the worker up 0.15 s earlier, which then finished 1.8-3.9 s after the other).

        Units within the share are all in flight at once: right when a unit's quota paces it (each
        unit takes its own quota's time, whichever worker runs it); where the workers' CPU is the
        limit, fewer slots keep the hand-out dynamic."""
        held = self.ready[index]
        if len(held) >= self.per_worker:
            return False
        if not held:
            return True
        share = (self.queued_weight + self.in_flight_weight) / max(1, len(self.sharing))
        return sum(self.weight(item) for item in held.values()) < share

    def take(self, index: int) -> _Pending | None:
        """The next unit for worker ``index``, in the queue's order (biggest first), preferring:

        1. a unit of an account this worker has scanned already (its credentials are cached there:
           no new AssumeRole), then
        2. a unit of an account no worker has touched yet (a worker per account while there are
           fresh accounts), then
        3. any unit this worker has not tried, then
        4. a unit it has tried already, only once every worker not gone for good has tried it (a
           retried unit goes to another worker, waiting for one to have room or to start).

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
        for position, item in enumerate(self.items):
            if self.alive <= item.tried_by | {index}:
                return self._give(index, position)
        return None

    def _give(self, index: int, position: int) -> _Pending:
        item = self.items.pop(position)
        self.accounts[index].add(item.unit.account)
        weight = self.weight(item)
        self.queued_weight -= weight
        self.in_flight += 1
        self.in_flight_weight += weight
        self.ready[index][id(item)] = item
        self.notify()
        return item

    def ended(self, item: _Pending) -> None:
        """A unit handed out has ended on its worker (finished, failed or lost)."""
        self.in_flight -= 1
        self.in_flight_weight -= self.weight(item)
        self.notify()

    def retry(self, item: _Pending) -> None:
        """Put a retried unit back: ahead of the units never tried, the biggest retried first."""
        size = item.unit.size or 0
        position = next(
            (
                i
                for i, queued in enumerate(self.items)
                if len(queued.tried_by) == 0 or (queued.unit.size or 0) < size
            ),
            len(self.items),
        )
        self.items.insert(position, item)
        self.queued_weight += self.weight(item)

    def done(self) -> bool:
        return not self.items and self.in_flight == 0

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
    units_per_worker: int = 1,
) -> list[UnitReport]:
    """Scan ``units`` on ``workers``; every unit's report, in the order they finished.

    ``units_per_worker``: the units a worker runs at once (its ``run`` is then called concurrently;
    the default, 1, suits a worker that runs one unit at a time).

    ``on_event`` is called (on the driver's loop; keep it quick) as units start, finish and are
    retried, and when a worker is gone for good, and with each unit's live counters while it runs
    (``UnitProgress``, every ``progress_interval`` seconds): the progress of the scan.
    """
    require_positive("max_attempts", max_attempts, integer=True)
    require_positive("progress_interval", progress_interval)
    require_positive("units_per_worker", units_per_worker, integer=True)
    if not workers:
        raise ScannerError("a distributed scan needs at least one worker")
    queue = _Queue(units, units_per_worker, (handle.index for handle in workers))
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
        progress: Callable[[], Awaitable[ProgressAnswer]], running: dict[int, _Pending], info: WorkerInfo
    ) -> None:
        """One question to the worker every ``progress_interval`` while it has units in flight."""
        while True:
            await anyio.sleep(progress_interval)
            if not running:
                continue
            try:
                answer = await progress()
            except Exception:  # a worker dying: its runs say so
                continue
            lives = () if answer is None else (answer,) if isinstance(answer, UnitLive) else tuple(answer)
            current = {(item.unit, item.attempt) for item in running.values()}  # as the answer came
            for live in lives:
                if (live.unit, live.attempt) in current:
                    emit(UnitProgress(live, info))

    async def run_one(
        handle: WorkerHandle, item: _Pending, info: WorkerInfo, running: dict[int, _Pending], lost: list[str]
    ) -> None:
        try:
            try:
                report = await handle.run(item.unit, item.attempt)
            except WorkerLost as exc:
                if not lost:  # it takes nothing more until restarted: the others share its units
                    queue.ready.pop(handle.index, None)
                    queue.sharing.discard(handle.index)
                lost.append(str(exc))
                error = f"worker {handle.index} (pid {info.pid}) was lost: {exc}"
            except Exception as exc:
                error = f"worker {handle.index} (pid {info.pid}) failed: {type(exc).__name__}: {exc}"
            else:
                running.pop(id(item), None)  # before the event: a progress answer now is stale
                emit(UnitFinished(report))
                return
            running.pop(id(item), None)
            logger.warning("unit %s, attempt %d: %s", item.unit, item.attempt, error)
            item.errors.append(error)
            if item.attempt < max_attempts:
                emit(UnitRetried(item.unit, info, item.attempt, error))
                tried = item.tried_by | {handle.index}
                queue.retry(_Pending(item.unit, item.attempt + 1, tried, item.errors))
            else:
                await end(item, f"gave up after {item.attempt} attempts: {error}")
        finally:
            running.pop(id(item), None)
            queue.ended(item)

    async def fill(handle: WorkerHandle, info: WorkerInfo, lost: list[str], tg: TaskGroup) -> None:
        """Keep the worker's slots full until every unit has ended, or the worker is lost."""
        running = queue.ready[handle.index]
        while not lost:
            if queue.has_room(handle.index):
                item = queue.take(handle.index)
                if item is not None:
                    emit(UnitStarted(item.unit, info, item.attempt))
                    tg.start_soon(run_one, handle, item, info, running, lost)
                    # The other workers waiting for units take the next ones first: the biggest
                    # units alternate between the workers up, instead of all going to one.
                    await anyio.lowlevel.checkpoint()
                    continue
            if queue.done():
                queue.notify()  # the others waiting for a retry see there is none coming
                return
            await queue.changed()

    async def work(handle: WorkerHandle) -> None:
        try:
            info = await handle.start()
        except WorkerLost as exc:
            queue.sharing.discard(handle.index)
            queue.alive.discard(handle.index)
            queue.notify()
            emit(WorkerGone(handle.index, str(exc)))
            return
        progress: Callable[[], Awaitable[ProgressAnswer]] | None = getattr(handle, "progress", None)
        try:
            while True:
                running = queue.ready[handle.index] = {}  # this worker's units in flight
                queue.sharing.add(handle.index)
                lost: list[str] = []  # the first unit to find the worker's process gone says so
                try:
                    async with anyio.create_task_group() as watching:
                        if progress is not None:
                            watching.start_soon(watch, progress, running, info)
                        async with anyio.create_task_group() as tg:
                            await fill(handle, info, lost, tg)
                        # Every unit of this worker has ended (a lost process's with WorkerLost).
                        watching.cancel_scope.cancel()
                finally:
                    queue.ready.pop(handle.index, None)
                    queue.sharing.discard(handle.index)
                if not lost:
                    return
                try:
                    info = await handle.start()
                except WorkerLost as exc:
                    emit(WorkerGone(handle.index, str(exc)))
                    return
        finally:
            queue.alive.discard(handle.index)
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
