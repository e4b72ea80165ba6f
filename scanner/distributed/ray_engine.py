"""The Ray engine: workers are Ray async actors; the driver (``scanner.distributed.driver``) runs
in the calling process and hands them units.

Only this module imports ``ray`` (the optional extra ``eas-fleet-scanner[ray]``), and only
``scan_with_ray`` imports this module.

Each actor has its own event loop (Ray's, for async actors), on which a host task opens the runner
(``RunnerFactory.open``: the actor's HTTP sessions, rate limiters and credential cache) and holds
it until the actor is closed; ``run`` calls execute on that loop, up to ``units_per_worker`` at
once per actor. Ray lets an async actor run 1,000 calls at once unless told otherwise; each actor
is told ``units_per_worker`` plus room for its ``start``, ``progress`` and ``close`` calls
(``CONTROL_CALLS``), so a progress question never waits behind the units.
Actors ask for a small share of a CPU (``worker_cpus``), are spread over the cluster's nodes, and
are restarted by Ray when their process dies (``max_restarts``); the driver, not Ray, retries the
unit that was running (``max_task_retries=0``), so that it can go to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from scanner.distributed.driver import STOP_GRACE_S, DriverEvent, WorkerLost, drive
from scanner.distributed.runner import (
    DirectoryRunnerFactory,
    RunnerFactory,
    WorkerScanConfig,
    WorkerSlot,
    assume_role_share,
)
from scanner.distributed.summary import DistributedSummary, OrgRoster, summarize
from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit
from scanner.distributed.worker import UnitWorker
from scanner.errors import ConfigError
from scanner.scandir import ScanDirectory, ScanParams
from scanner.validation import require_positive

__all__ = ["scan_with_ray_async"]

logger = logging.getLogger("scanner.distributed")

#: How many times Ray restarts a worker whose process died, before the driver counts it gone.
MAX_RESTARTS = 3
#: How long a worker may stay unavailable (starting, restarting) before the driver counts it gone.
START_TIMEOUT_S = 120.0
#: Calls an actor may run besides its units: ``start``, ``progress``, ``close``, and one to spare.
CONTROL_CALLS = 4


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(UnitWorker)
    return _ACTOR


class _RayWorker:
    """A ``WorkerHandle`` on one actor."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self._actor = actor

    async def start(self) -> WorkerInfo:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                info: WorkerInfo = await self._actor.start.remote()
            except ActorUnavailableError as exc:  # restarting: it comes back, or dies for good
                if time.monotonic() > deadline:
                    raise WorkerLost(f"worker {self.index}: {_first_line(exc)}") from None
                await anyio.sleep(0.5)
                continue
            except RayActorError as exc:
                raise WorkerLost(f"worker {self.index}: {_first_line(exc)}") from None
            return info

    async def run(self, unit: WorkUnit, attempt: int) -> UnitReport:
        ref = self._actor.run.remote(unit, attempt)
        try:
            report: UnitReport = await ref
        except RayActorError as exc:
            raise WorkerLost(_first_line(exc)) from None
        except asyncio.CancelledError:
            # Stop the unit on the worker too: it discards its uncommitted part (the unit keeps its
            # previous entry), or finishes its commit; wait for that, within bounds, so the directory
            # is left as it will stay. Not ray.cancel: see ``UnitWorker.cancel``.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(STOP_GRACE_S),
                contextlib.suppress(Exception),  # the unit's "cancelled", RayActorError...
            ):
                await self._actor.cancel.remote(unit, attempt)
                await ref
            raise
        return report

    async def progress(self) -> tuple[UnitLive, ...]:
        live: tuple[UnitLive, ...] = await self._actor.progress.remote()
        return live

    async def stop(self) -> None:
        try:
            with anyio.move_on_after(STOP_GRACE_S):
                await self._actor.close.remote()
        except RayActorError:
            pass
        finally:
            ray.kill(self._actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def init_ray(address: str | None, options: Mapping[str, Any] | None = None) -> bool:
    """Connect to Ray (``address``: ``auto``, ``ray://host:10001``...) or start it on this machine,
    on loopback only, without its dashboard. True when this call started or joined it (and
    ``ray.shutdown`` is then the caller's); False when Ray was already initialised."""
    if ray.is_initialized():
        return False
    arguments: dict[str, Any] = {"configure_logging": False, "log_to_driver": False, **(options or {})}
    if address is None:
        arguments.setdefault("include_dashboard", False)
        arguments.setdefault("_node_ip_address", "127.0.0.1")
        ray.init(**arguments)
    else:
        ray.init(address=address, **arguments)
    return True


async def scan_with_ray_async(
    config: WorkerScanConfig,
    output_dir: str | os.PathLike[str],
    *,
    regions: Sequence[str] | None,
    units: Sequence[WorkUnit] | None,
    format: str,
    accounts: Sequence[str] | str | None,
    params: ScanParams | None,
    workers: int,
    ray_address: str | None,
    ray_options: Mapping[str, Any] | None,
    resume: bool,
    max_attempts: int,
    worker_cpus: float,
    units_per_worker: int,
    assume_role_rate: float,
    runner_factory: Callable[[str], RunnerFactory] | None,
    on_event: Callable[[DriverEvent], None] | None,
    shard: Callable[[str | None, str], bool] | None,
    roster: OrgRoster | None,
) -> DistributedSummary:
    """The body of ``scanner.distributed.scan_with_ray_async``, its only caller: that front (which
    imports this module only when called, as Ray is an optional extra) holds the defaults and the
    documentation and passes every argument; here they are all required, so there is one set."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if not worker_cpus > 0:
        raise ConfigError(f"worker_cpus must be > 0, got {worker_cpus}")
    require_positive("units_per_worker", units_per_worker, integer=True)
    if roster is not None and units is None and regions is None:
        units = roster.units()
        if not units:  # every account failed while planned: nothing for the workers
            return summarize([], planned=[], duration_s=0.0, cancelled=False, roster=roster)
    work = _plan_units(regions, units)
    multi = any(unit.account is not None for unit in work)
    if multi and accounts is None:
        accounts = sorted({unit.account for unit in work if unit.account is not None})
    if params is None:
        params = ScanParams(
            format=format,
            filters=_filters(config),
            regions=tuple(sorted({unit.region for unit in work})),
            accounts=accounts if accounts is None or isinstance(accounts, str) else tuple(accounts),
        )
    run_id = secrets.token_hex(8)
    directory = ScanDirectory.create_or_open(Path(output_dir), params, run_id=run_id)
    kept = kept_records = 0
    mine = work if shard is None else [unit for unit in work if shard(unit.account, unit.region)]
    if resume:
        plan = directory.resume_plan(params)
        todo = [unit for unit in mine if plan.should_scan(unit.account, unit.region)]
        kept = sum(1 for unit in mine if unit.unit in plan.complete)
        kept_records = plan.records
    else:
        todo = list(mine)
    directory.expect((unit.account, unit.region) for unit in work)
    factory = (
        runner_factory(run_id)
        if runner_factory is not None
        else DirectoryRunnerFactory(config, str(output_dir), params, run_id)
    )

    async def give_up(unit: WorkUnit, attempt: int, failures: list[dict[str, Any]]) -> UnitReport:
        done = directory.entry(unit.unit)
        if done is not None and done.status == "complete" and done.run_id == run_id:
            # Its worker died between the commit and the reply: the part is whole and stays.
            return UnitReport(unit=unit, status="complete", records=done.records, attempt=attempt)
        async with directory.part(unit.account, unit.region) as part:
            entry = await part.commit("incomplete", failures)
        return UnitReport(
            unit=unit, status="incomplete", records=entry.records, failures=tuple(failures), attempt=attempt
        )

    started = time.monotonic()
    owned = init_ray(ray_address, ray_options) if todo else False
    reports: list[UnitReport] = []
    cancelled = True
    try:
        if todo:
            actor = _actor_class()
            share = assume_role_share(assume_role_rate, workers)
            handles = [
                _RayWorker(
                    index,
                    actor.options(
                        num_cpus=worker_cpus,
                        max_restarts=MAX_RESTARTS,
                        max_task_retries=0,
                        max_concurrency=units_per_worker + CONTROL_CALLS,
                        scheduling_strategy="SPREAD",
                    ).remote(factory, WorkerSlot(index=index, workers=workers, assume_role_rate=share)),
                )
                for index in range(workers)
            ]

            reports = await drive(
                todo,
                handles,
                give_up=give_up,
                max_attempts=max_attempts,
                on_event=on_event,
                units_per_worker=units_per_worker,
            )
        cancelled = False
        directory.finish_run()
    finally:
        if owned:
            ray.shutdown()
    return summarize(
        reports,
        planned=todo,
        duration_s=time.monotonic() - started,
        cancelled=cancelled,
        kept=kept,
        kept_records=kept_records,
        roster=roster,
    )


def _plan_units(regions: Sequence[str] | None, units: Sequence[WorkUnit] | None) -> list[WorkUnit]:
    if (regions is None) == (units is None):
        raise ConfigError("give the regions to scan, or the units (account, region), not both")
    if units is not None:
        work = list(units)
    else:
        assert regions is not None
        if isinstance(regions, str):
            raise ConfigError(f"regions must be a list of region ids, got {regions!r}")
        work = [WorkUnit(None, region) for region in dict.fromkeys(regions)]
    if not work:
        raise ConfigError("nothing to scan: no regions or units given")
    if len({unit.account is None for unit in work}) > 1:
        raise ConfigError("units must all name an account (an organisation scan) or none")
    return work


def _filters(config: WorkerScanConfig) -> dict[str, Any]:
    filters: dict[str, Any] = dict(config.instance_filters)
    if config.services is not None:
        filters["services"] = sorted(config.services)
    if config.service_filter is not None:
        filters["service_filter"] = config.service_filter
    return filters
