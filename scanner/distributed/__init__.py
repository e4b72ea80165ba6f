"""Scans spread over several processes or machines: the Ray engine (an optional extra).

::

    from scanner.distributed import WorkerScanConfig, scan_with_ray

    summary = scan_with_ray(
        WorkerScanConfig(endpoint_type="vpc"),        # how each worker builds its Scanner
        "/shared/scans/2026-12-06",                  # DIR: a path every node can write
        regions=["cn-hangzhou", "cn-shanghai"],      # or units=[WorkUnit(account, region, size)]
        workers=8,
        ray_address="auto",                          # None: start Ray on this machine
    )
    summary.complete, summary.records, summary.to_dict()

The unit of work is one (account, region): its own API quota and its own part in the scan
directory. The driver (this process) hands units to Ray async actors one at a time, biggest first,
as each actor has a free slot: an actor scans up to ``units_per_worker`` units at once (each paced
by its own quota), with its own ``Scanner`` per account, and commits each unit's part into DIR, as
a local scan with ``--output-dir`` would. See ``driver`` (hand-out, retries, progress, cancellation),
``runner`` (what runs in a worker, and why AssumeRole gets a per-worker share of its quota),
``summary`` (the summary, and ``Progress``: a local scan's live statistics from the workers'
reports) and ``ray_engine``. An organisation scan planned by the caller (``OrgRoster``: accounts,
their regions, the accounts refused and the members skipped) gets a local organisation scan's
summary (``accounts``, ``skipped_accounts``); ``eas-scan scan --org ... --engine ray`` does that.

Nothing here imports ``ray`` until ``scan_with_ray`` is called: the base install never needs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from scanner.distributed.driver import (
    DriverEvent,
    UnitFinished,
    UnitProgress,
    UnitRetried,
    UnitStarted,
    WorkerGone,
    WorkerHandle,
    WorkerLost,
    drive,
)
from scanner.distributed.org import AssumedRoleSource
from scanner.distributed.runner import (
    DEFAULT_ASSUME_ROLE_RATE,
    DEFAULT_UNITS_PER_WORKER,
    AccountCredentialsSource,
    DirectoryRunnerFactory,
    RunnerFactory,
    UnitRunner,
    WorkerScanConfig,
    WorkerSlot,
    assume_role_share,
    live_unit,
)
from scanner.distributed.summary import DistributedSummary, OrgRoster, Progress, summarize
from scanner.distributed.units import UnitLive, UnitReport, WorkerInfo, WorkUnit, order_units, sizes_from

if TYPE_CHECKING:
    from scanner.scandir import ScanParams

__all__ = [
    "DEFAULT_ASSUME_ROLE_RATE",
    "DEFAULT_UNITS_PER_WORKER",
    "AccountCredentialsSource",
    "AssumedRoleSource",
    "DirectoryRunnerFactory",
    "DistributedSummary",
    "DriverEvent",
    "OrgRoster",
    "Progress",
    "RunnerFactory",
    "UnitFinished",
    "UnitLive",
    "UnitProgress",
    "UnitReport",
    "UnitRetried",
    "UnitRunner",
    "UnitStarted",
    "WorkUnit",
    "WorkerGone",
    "WorkerHandle",
    "WorkerInfo",
    "WorkerLost",
    "WorkerScanConfig",
    "WorkerSlot",
    "assume_role_share",
    "drive",
    "keep_ray_on_loopback",
    "live_unit",
    "order_units",
    "scan_with_ray",
    "scan_with_ray_async",
    "sizes_from",
    "summarize",
]


async def scan_with_ray_async(
    config: WorkerScanConfig,
    output_dir: str | os.PathLike[str],
    *,
    regions: Sequence[str] | None = None,
    units: Sequence[WorkUnit] | None = None,
    format: str = "jsonl",
    accounts: Sequence[str] | str | None = None,
    params: ScanParams | None = None,
    workers: int = 2,
    ray_address: str | None = None,
    ray_options: Mapping[str, Any] | None = None,
    resume: bool = False,
    max_attempts: int = 3,
    worker_cpus: float = 0.25,
    units_per_worker: int = DEFAULT_UNITS_PER_WORKER,
    assume_role_rate: float = DEFAULT_ASSUME_ROLE_RATE,
    runner_factory: Callable[[str], RunnerFactory] | None = None,
    on_event: Callable[[DriverEvent], None] | None = None,
    shard: Callable[[str | None, str], bool] | None = None,
    roster: OrgRoster | None = None,
) -> DistributedSummary:
    """The async form of ``scan_with_ray`` (asyncio only: it awaits Ray's object refs)."""
    if ray_address is None:
        keep_ray_on_loopback()
    try:
        from scanner.distributed import ray_engine
    except ImportError as exc:
        from scanner.errors import ConfigError

        raise ConfigError(
            f"the Ray engine needs the optional extra: pip install 'eas-fleet-scanner[ray]' ({exc})"
        ) from None
    return await ray_engine.scan_with_ray_async(
        config,
        output_dir,
        regions=regions,
        units=units,
        format=format,
        accounts=accounts,
        params=params,
        workers=workers,
        ray_address=ray_address,
        ray_options=ray_options,
        resume=resume,
        max_attempts=max_attempts,
        worker_cpus=worker_cpus,
        units_per_worker=units_per_worker,
        assume_role_rate=assume_role_rate,
        runner_factory=runner_factory,
        on_event=on_event,
        shard=shard,
        roster=roster,
    )


#: Ray reads it once, at import: off, Ray takes 127.0.0.1 as the node's address (and binds its
#: servers there) instead of the machine's routable address. Meant for macOS and Windows; it is
#: what keeps a local, single-machine Ray off the network.
_RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_ray_on_loopback() -> bool:
    """Make a Ray started by this process listen on loopback only (before ``ray`` is imported).

    Ray 2.x turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address and binds
    its GCS, raylet and worker servers there; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it keeps
    127.0.0.1. The variable stays set in this process (and its children): this process can no
    longer join a multi-machine Ray cluster. False when ``ray`` was already imported (too late) or
    the variable is set already (the user's choice stands).
    """
    if "ray" in sys.modules or _RAY_LOOPBACK_ENV in os.environ:
        return False
    os.environ[_RAY_LOOPBACK_ENV] = "0"
    return True


def scan_with_ray(
    config: WorkerScanConfig, output_dir: str | os.PathLike[str], **options: Any
) -> DistributedSummary:
    """Scan into the scan directory ``output_dir`` with Ray workers; the summary when it ends.

    - ``regions`` (single-account) or ``units`` (``WorkUnit(account, region, size)``): the work.
    - ``workers``: how many actors (default 2); ``worker_cpus``: the CPU each asks of Ray (0.25).
    - ``units_per_worker``: units each actor scans at once (default 8, ``DEFAULT_UNITS_PER_WORKER``).
      A unit is paced by its own API quota (about 30 requests/s), so one at a time leaves an actor
      idle most of the time; each unit in flight costs 1-2.5 MB (its page buffer, part writer
      and, for a new account, a ``Scanner``), so 8 add 10-20 MB to an actor's ~145 MB. A
      worker that dies has all its units in flight retried elsewhere: more slots, more to redo.
    - ``ray_address``: None starts Ray on this machine (loopback only, no dashboard) and stops it at
      the end; ``"auto"`` or ``"ray://host:10001"`` joins a cluster, where ``output_dir`` must be a
      shared file system mounted at the same path on every node (and on this one).
    - ``ray_options``: more ``ray.init`` arguments (``runtime_env``, ``namespace``...), used only
      when this call starts or joins Ray.
    - ``resume``: keep the units complete in the directory, scan the rest (as ``--resume``).
    - ``max_attempts``: attempts of a unit whose worker died or failed, before it is committed
      ``incomplete`` (code ``WorkerLost``).
    - ``format``, ``accounts`` or ``params``: the scan directory's parameters (``ScanParams``).
    - ``assume_role_rate``: AssumeRole calls per second for the whole scan, shared evenly.
    - ``on_event``: progress (``UnitStarted``, ``UnitFinished``, ``UnitRetried``, ``WorkerGone``,
      and ``UnitProgress``: a running unit's live counters, every 0.2 s; ``Progress`` adds them up).
    - ``shard``: ``shard(account, region)``, the units this call scans of those given (e.g.
      ``scanner.scandir.Shard(0, 4)``); the directory still expects every unit, as ``--shard`` does.
    - ``roster``: an organisation scan as the driver planned it (``OrgRoster``): its units when
      ``units`` is not given, and the summary's ``accounts`` and ``skipped_accounts`` blocks.

    Cancelling it (Ctrl-C) stops every worker; each unit not committed yet keeps its previous entry,
    so ``resume=True`` carries on from there.
    """
    return anyio.run(lambda: scan_with_ray_async(config, output_dir, **options))
