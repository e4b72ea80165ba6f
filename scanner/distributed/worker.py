"""The body of a worker: what each Ray actor runs (``ray_engine`` makes it remote; tests run it as is).

Ray runs each call of an async actor's method as its own task on the actor's event loop. A
``Scanner`` (like any anyio task group) must be left by the task that entered it, so the runner is
opened, held and closed by one long-lived host task (started by the first ``start``, ended by
``close``), and ``run`` calls use it from their own tasks.

**Cancelling a unit** is ``cancel(unit, attempt)``: it cancels the anyio cancel scope the unit runs
in, so its part is discarded and its previous entry stands, or, when the cancellation lands while
the part is being committed (in a thread, shielded), the commit ends first and the unit stays
committed. ``ray.cancel`` would instead cancel the asyncio task of the ``run`` call, and asyncio's
own cancellation goes through anyio's shields; the scan directory survives it (a commit that has
started finishes first: ``scanner.scandir.threads``), but the cancel scope is what lets the runner
end the unit's scan in order and report it.

**Several units at once.** The driver may call ``run`` again before the earlier calls return (up
to its ``units_per_worker``): each call is a task of its own on the actor's loop, and they share the
one runner (its HTTP sessions, rate limiters and credential cache), while what is a unit's own
stays its own: its scan stream, its part writer, its live counters (kept by (unit, attempt)).

**Progress.** While units run, ``progress()`` answers with their live counters (``UnitLive``, one
per unit that has started listing): the runner publishes each scan's ``statistics``
(``runner.live_unit``) and each call takes one snapshot of each, so the driver, which asks a busy
worker every 0.2 s, sees its units move page by page while the worker does no work per page (nor
per record) for it.

**Garbage collection.** The worker's process is the worker's: while its runner is open, the
collector's first-generation threshold is raised as the CLI raises it for a scan
(``scanner.gctuning.batch_gc``), then restored. A Ray worker holds some 73,000 tracked objects
before its first unit (Ray's, gRPC's, protobuf's), and at CPython's threshold it ran ~80 young
collections, 7 middle and one full one a 30,000-record scan, 0.09-0.11 s of its 0.78-0.89 s of CPU
(``gc.callbacks``; 11-12%, ~3 µs a record); the local engine's scan, under ``batch_gc``, ran 2.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import replace

import anyio

from scanner.distributed.runner import RunnerFactory, UnitRunner, WorkerSlot, live_unit
from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit
from scanner.engine.stats import ScanStatistics
from scanner.errors import ScannerError
from scanner.gctuning import batch_gc

__all__ = ["UnitWorker"]


class UnitWorker:
    """The body of a worker actor: runs units with the runner its host task holds (see the module)."""

    def __init__(self, factory: RunnerFactory, slot: WorkerSlot) -> None:
        self._factory = factory
        self._slot = slot
        self._runner: UnitRunner | None = None
        self._host: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[UnitRunner] | None = None
        self._stop = asyncio.Event()
        #: The units running now, by (unit, attempt).
        self._running: dict[tuple[WorkUnit, int], _Running] = {}

    async def _serve(self, ready: asyncio.Future[UnitRunner]) -> None:
        try:
            with batch_gc():  # this process is the worker's: less CPU in the collector (module)
                async with self._factory.open(self._slot) as runner:
                    ready.set_result(runner)
                    await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def start(self) -> WorkerInfo:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._host = asyncio.get_running_loop().create_task(self._serve(self._ready))
        self._runner = await asyncio.shield(self._ready)
        return self._info()

    def _info(self) -> WorkerInfo:
        return WorkerInfo(index=self._slot.index, pid=os.getpid(), host=socket.gethostname())

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        """Scan ``unit`` (attempt ``attempt``) into its part; ``ScannerError`` if it was cancelled
        (``cancel``) before its commit."""
        runner = self._runner or await self._ensure_started()
        key = (unit, attempt)
        running = self._running[key] = _Running()
        report: UnitReport | None = None
        try:
            with running.scope, live_unit(running.publish):
                report = await runner(unit)
        finally:
            self._running.pop(key, None)
        if report is None:
            raise ScannerError(f"unit {unit}, attempt {attempt}: cancelled before its commit")
        return replace(report, worker=self._info(), attempt=attempt)

    async def cancel(self, unit: WorkUnit, attempt: int) -> None:
        """Cancel the unit's scan if it runs here (its ``run`` then raises, or returns its report
        if it was committing already); nothing if it does not."""
        running = self._running.get((unit, attempt))
        if running is not None:
            running.scope.cancel()

    async def progress(self) -> tuple[UnitLive, ...]:
        """The live counters of the units running now (those that have started listing)."""
        return tuple(
            UnitLive(unit, attempt, running.source())
            for (unit, attempt), running in list(self._running.items())
            if running.source is not None
        )

    async def _ensure_started(self) -> UnitRunner:
        await self.start()
        assert self._runner is not None
        return self._runner

    async def close(self) -> None:
        self._stop.set()
        if self._host is not None:
            await asyncio.gather(self._host, return_exceptions=True)


class _Running:
    """A unit running in the worker: its cancel scope, and where its counters are read."""

    __slots__ = ("scope", "source")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.source: Callable[[], ScanStatistics] | None = None

    def publish(self, source: Callable[[], ScanStatistics]) -> None:
        self.source = source
