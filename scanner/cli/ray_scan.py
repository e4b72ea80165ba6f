"""``eas-scan scan --output-dir DIR --engine ray``: the scan spread over Ray workers.

The driver (this process) finds the regions as a local scan does (``--regions``, the ``--endpoint``
ones, or DescribeRegions), then hands one unit per region to Ray async actors
(``scanner.distributed``), each writing its parts into DIR. The scan directory, its parameters
(``ScanConfig.scan_params()``, so that ``--resume`` works across engines), the summary and the exit
codes are a local ``--output-dir`` scan's. With ``--simulate`` the simulator runs in the driver and
the workers (local Ray) reach it on loopback.

Only ``scanner.cli.scan``'s ``--engine ray`` branch imports this module, and only its scan imports
``ray`` (``scanner.distributed.ray_engine``): a local ``eas-scan scan`` never does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console

from scanner import (
    ConfigError,
    Consistency,
    CredentialsProvider,
    DefaultCredentials,
    ScanFailedError,
    Scanner,
    ScanSummary,
    StaticCredentials,
)
from scanner.cli.engine import RAY_EXTRA_HINT
from scanner.cli.simulated import start_simulator
from scanner.distributed import (
    DistributedSummary,
    DriverEvent,
    Progress,
    UnitFinished,
    UnitReport,
    WorkerScanConfig,
    WorkUnit,
    keep_ray_on_loopback,
    scan_with_ray_async,
    summarize,
)
from scanner.events import UnitsPlanned
from scanner.summary import Failure, RegionSummary

if TYPE_CHECKING:
    from scanner.cli.config import ScanConfig
    from scanner.cli.scan import DirectoryTarget, ScanResult
    from scanner.cli.signals import Interrupts

__all__ = ["RaySummary", "scan_with_ray", "worker_config"]

log = logging.getLogger("scanner.cli")


def worker_config(
    config: ScanConfig,
    *,
    endpoints: Mapping[str, str] | None = None,
    credentials: Callable[[], CredentialsProvider] | None = None,
) -> WorkerScanConfig:
    """What each worker needs to scan as ``config`` asks (``endpoints``/``credentials``: the simulator's)."""
    return WorkerScanConfig(
        credentials=credentials,
        profile=config.profile,
        endpoints=dict(config.endpoints if endpoints is None else endpoints),
        endpoint_type=config.endpoint_type,
        concurrency=config.concurrency,
        rate_limit=config.rate_limit,
        retry=config.retry,
        timeouts=config.timeouts,
        connection_limits=config.connection_limits,
        services=config.services,
        service_filter=config.service_filter,
        instance_filters=dict(config.instance_filters),
        consistency=Consistency(page_size=config.page_size),
    )


@dataclass(frozen=True, slots=True)
class RaySummary(ScanSummary):
    """A distributed scan's summary for the CLI: the table reads its ``ScanSummary`` fields, and
    ``to_dict()`` (the --summary JSON) is ``DistributedSummary.to_dict()``: a local summary's keys,
    plus ``units`` and ``workers``."""

    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, summary: DistributedSummary) -> RaySummary:
        document = summary.to_dict()
        return cls(
            complete=summary.complete,
            records=summary.records,
            duration_s=summary.duration_s,
            requests=int(document.get("requests", 0)),
            retries=int(document.get("retries", 0)),
            throttled=int(document.get("throttled", 0)),
            regions={
                name: RegionSummary(
                    services=int(region.get("services", 0)),
                    instances=int(region.get("instances", 0)),
                    complete=bool(region.get("complete")),
                    error=region.get("error"),
                )
                for name, region in document.get("regions", {}).items()
            },
            failures=tuple(
                Failure(
                    region=str(failure.get("region")),
                    service=failure.get("service"),
                    code=str(failure.get("code")),
                    message=str(failure.get("message")),
                )
                for failure in document.get("failures", ())
            ),
            verdicts=dict(document.get("services", {})),
            notable_services=tuple(
                (str(item.get("region")), str(item.get("service")), str(item.get("verdict")))
                for item in document.get("notable_services", ())
            ),
            missing_services=tuple(document.get("missing_services", ())),
            cancelled=summary.cancelled,
            bytes_received=int(document.get("bytes_received", 0)),
            document=document,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.document, "complete": self.complete}


async def scan_with_ray(
    config: ScanConfig, target: DirectoryTarget, stderr: Console, interrupts: Interrupts
) -> ScanResult:
    """The Ray engine's scan into ``target`` (run by ``scanner.cli.scan.run`` on its event loop)."""
    from scanner.cli.scan import ScanResult

    engine = config.engine
    interrupted = False
    run: _Run | None = None

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        scope.cancel()  # the driver stops every worker; uncommitted units keep their previous entry

    with anyio.CancelScope() as scope, interrupts.stopping(stop):
        async with AsyncExitStack() as stack:
            workers_config, regions = await _plan(config, stack)
            run = _Run(target, regions, enabled=config.progress)
            owned = _start_ray(engine.ray_address) if run.planned else False
            try:
                summary = await scan_with_ray_async(
                    workers_config,
                    target.directory.path,
                    regions=regions,
                    format=config.fmt,
                    params=config.scan_params(),
                    workers=engine.workers,
                    ray_address=engine.ray_address,
                    resume=config.resume,
                    on_event=run.on_event,
                )
            finally:
                if owned:
                    _stop_ray()
            log.info(
                "scan directory %s: %d region(s) listed by this run", target.directory.path, len(run.planned)
            )
            return ScanResult(summary=RaySummary.of(summary), interrupted=interrupted)
    if run is None:
        return ScanResult(interrupted=True)  # stopped before the scan began
    # Stopped: the units the workers committed stay, the others keep their previous entry (--resume).
    return ScanResult(summary=RaySummary.of(run.stopped()), interrupted=True)


async def _plan(config: ScanConfig, stack: AsyncExitStack) -> tuple[WorkerScanConfig, list[str]]:
    """The workers' configuration, and the regions, found as a local scan finds them."""
    if config.simulate:
        simulator = await start_simulator(config.simulate, config.regions, stack)
        endpoints: dict[str, str] = dict(simulator.endpoints)
        keys = functools.partial(StaticCredentials, simulator.access_key_id, simulator.access_key_secret)
        workers = worker_config(config, endpoints=endpoints, credentials=keys)
        credentials: CredentialsProvider = keys()
    else:
        workers = worker_config(config)
        credentials = DefaultCredentials(config.profile)
        log.debug("using %r", await credentials.get_credentials())  # fail now, before any request
    async with workers.scanner(credentials) as scanner:
        regions = await _regions(scanner, config)
    return workers, regions


async def _regions(scanner: Scanner, config: ScanConfig) -> list[str]:
    """The regions of the scan: the stream of a scan that lists no unit names them, and ends."""
    stream = scanner.scan(regions=config.regions, units=lambda account, region: False)
    regions: list[str] = []
    async with contextlib.aclosing(stream.events()) as events:
        async for item in events:
            if isinstance(item, UnitsPlanned):
                regions.extend(r for r in item.regions if r not in regions)
    if stream.fatal is not None:
        raise stream.fatal
    if not regions:
        raise ScanFailedError("no region to scan: the account's region list is empty")
    return regions


def _start_ray(address: str | None) -> bool:
    """Start (or join) Ray, as ``scan_with_ray_async`` would, keeping the CLI's signal handlers
    (``ray.init`` puts its own on SIGTERM: an exit without the summary). True when we own it."""
    if address is None:
        keep_ray_on_loopback()
    try:
        from scanner.distributed.ray_engine import init_ray
    except ImportError as exc:
        raise ConfigError(f"{RAY_EXTRA_HINT} ({exc})") from None
    started = time.monotonic()
    with _keeping_signal_handlers():
        owned = init_ray(address)
    where = "started on this machine (loopback only)" if address is None else f"joined at {address}"
    log.info(
        "Ray %s in %.1fs", where if owned else "already running in this process", time.monotonic() - started
    )
    return owned


def _stop_ray() -> None:
    import ray

    with _keeping_signal_handlers():
        ray.shutdown()


@contextlib.contextmanager
def _keeping_signal_handlers() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


class _Run:
    """The units of this run, and its progress: a units line as each unit ends."""

    def __init__(self, target: DirectoryTarget, regions: list[str], *, enabled: bool) -> None:
        plan = target.plan
        self.planned = [WorkUnit(None, r) for r in regions if plan is None or plan.should_scan(None, r)]
        kept = plan.complete if plan is not None else set()
        self._kept = sum(1 for region in regions if WorkUnit(None, region).unit in kept)
        self._kept_records = plan.records if plan is not None else 0
        self._progress = Progress(len(self.planned))
        self._enabled = enabled
        self._started = time.monotonic()
        self._reports: list[UnitReport] = []

    def on_event(self, event: DriverEvent) -> None:
        self._progress.on_event(event)
        if not isinstance(event, UnitFinished):
            return
        self._reports.append(event.report)
        if self._enabled:
            now = self._progress.snapshot()
            log.info(
                "progress: units %d/%d (%d running, %d retried), %s records, %s requests, %d failures; %s %s",
                now["done"],
                now["units"],
                now["running"],
                now["retried"],
                f"{now['records']:,}",
                f"{now['requests']:,}",
                now["failures"],
                event.report.unit,
                event.report.status,
            )

    def stopped(self) -> DistributedSummary:
        """The summary of a stopped run: the units that ended, the others not finished."""
        return summarize(
            self._reports,
            planned=self.planned,
            duration_s=time.monotonic() - self._started,
            cancelled=True,
            kept=self._kept,
            kept_records=self._kept_records,
        )
