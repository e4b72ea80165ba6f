"""The body of a worker: what each Ray actor runs (``ray_engine`` makes it remote; tests run it as is).

Ray runs each call of an async actor's method as its own task on the actor's event loop. A
``Scanner`` (like any anyio task group) must be left by the task that entered it, so the runner is
opened, held and closed by one long-lived host task (started by the first ``start``, ended by
``close``), and ``run`` calls use it from their own tasks. A cancelled ``run`` (``ray.cancel``)
gets a ``CancelledError`` inside the unit's scan: its part is discarded, its previous entry stands.

**Progress.** While a unit runs, ``progress()`` answers with its live counters (``UnitLive``): the
runner publishes its scan's ``statistics`` (``runner.live_unit``) and each call takes one snapshot,
so the driver, which asks a busy worker every 0.2 s, sees a unit move page by page while the worker
does no work per page (nor per record) for it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import replace

from scanner.distributed.runner import RunnerFactory, UnitRunner, WorkerSlot, live_unit
from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit
from scanner.engine.stats import ScanStatistics

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
        #: The unit running now, its attempt, and where its counters are read (once published).
        self._running: tuple[WorkUnit, int] | None = None
        self._source: Callable[[], ScanStatistics] | None = None

    async def _serve(self, ready: asyncio.Future[UnitRunner]) -> None:
        try:
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
        runner = self._runner or await self._ensure_started()
        self._running, self._source = (unit, attempt), None

        def publish(source: Callable[[], ScanStatistics]) -> None:
            if self._running == (unit, attempt):
                self._source = source

        try:
            with live_unit(publish):
                report = await runner(unit)
        finally:
            if self._running == (unit, attempt):
                self._running = self._source = None
        return replace(report, worker=self._info(), attempt=attempt)

    async def progress(self) -> UnitLive | None:
        """The live counters of the unit running now (None: none, or it has not started listing)."""
        running, source = self._running, self._source
        if running is None or source is None:
            return None
        return UnitLive(running[0], running[1], source())

    async def _ensure_started(self) -> UnitRunner:
        await self.start()
        assert self._runner is not None
        return self._runner

    async def close(self) -> None:
        self._stop.set()
        if self._host is not None:
            await asyncio.gather(self._host, return_exceptions=True)
