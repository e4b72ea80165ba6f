"""The body of a worker: what each Ray actor runs (``ray_engine`` makes it remote; tests run it as is).

Ray runs each call of an async actor's method as its own task on the actor's event loop. A
``Scanner`` (like any anyio task group) must be left by the task that entered it, so the runner is
opened, held and closed by one long-lived host task (started by the first ``start``, ended by
``close``), and ``run`` calls use it from their own tasks. A cancelled ``run`` (``ray.cancel``)
gets a ``CancelledError`` inside the unit's scan: its part is discarded, its previous entry stands.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import replace

from scanner.distributed.runner import RunnerFactory, UnitRunner, WorkerSlot
from scanner.distributed.units import UnitReport, WorkerInfo, WorkUnit

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
        report = await runner(unit)
        return replace(report, worker=self._info(), attempt=attempt)

    async def _ensure_started(self) -> UnitRunner:
        await self.start()
        assert self._runner is not None
        return self._runner

    async def close(self) -> None:
        self._stop.set()
        if self._host is not None:
            await asyncio.gather(self._host, return_exceptions=True)
