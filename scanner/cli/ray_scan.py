"""``eas-scan scan --output-dir DIR --engine ray``: the scan spread over Ray workers.

The driver (this process) finds the units as a local scan does: the regions (``--regions``, the
``--endpoint`` ones, or DescribeRegions), and in an organisation scan (``--org``, ``--accounts``,
``--simulate org-*``) the accounts too (ListAccounts or the accounts file, members not in a success
status skipped) and each account's regions (``_org_roster``). It hands the (account, region) units
(biggest first when an earlier scan in DIR gave their sizes; ``--shard`` keeps its own) to Ray async
actors (``scanner.distributed``), which assume the accounts' roles and write their parts into DIR.
The scan directory, its parameters (``ScanConfig.scan_params()``, so that ``--resume`` works across
engines), the records, the summary (``accounts``, ``skipped_accounts``, ``failures[].account``) and
the exit codes are a local ``--output-dir`` scan's. Progress is a local scan's display too, fed by the
workers' live counters (``scanner.distributed.driver``). With ``--simulate`` the simulator runs in
the driver and the workers (local Ray) reach it on loopback.

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
    Organization,
    ScanFailedError,
    Scanner,
    ScannerError,
    ScanSummary,
    StaticCredentials,
)
from scanner.cli.engine import RAY_EXTRA_HINT
from scanner.cli.simulated import start_simulator
from scanner.distributed import (
    AssumedRoleSource,
    DistributedSummary,
    DriverEvent,
    OrgRoster,
    Progress,
    UnitFinished,
    UnitReport,
    WorkerScanConfig,
    WorkUnit,
    keep_ray_on_loopback,
    scan_with_ray_async,
    sizes_from,
    summarize,
)
from scanner.events import UnitsPlanned
from scanner.output.progress import LogProgress, TerminalProgress
from scanner.summary import AccountSummary, Failure, RegionSummary, ScanStatistics

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
    accounts: AssumedRoleSource | None = None,
    per_account: int | None = None,
) -> WorkerScanConfig:
    """What each worker needs to scan as ``config`` asks (``endpoints``/``credentials``: the simulator's;
    ``accounts``: how member accounts' roles are assumed, ``per_account``: one account's requests
    in flight, ``--concurrency-per-account``)."""
    return WorkerScanConfig(
        credentials=credentials,
        profile=config.profile,
        account_credentials=accounts,
        endpoints=dict(config.endpoints if endpoints is None else endpoints),
        endpoint_type=config.endpoint_type,
        concurrency=config.concurrency,
        concurrency_per_account=per_account,
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
            regions={name: _region_summary(region) for name, region in document.get("regions", {}).items()},
            failures=tuple(
                Failure(
                    region=str(failure.get("region")),
                    service=failure.get("service"),
                    code=str(failure.get("code")),
                    message=str(failure.get("message")),
                    account=failure.get("account"),
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
            accounts=None if "accounts" not in document else _account_summaries(document["accounts"]),
            skipped_accounts=tuple(
                (str(item["id"]), str(item["status"])) for item in document.get("skipped_accounts", ())
            ),
            document=document,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.document, "complete": self.complete}


def _region_summary(region: Mapping[str, Any]) -> RegionSummary:
    return RegionSummary(
        services=int(region.get("services", 0)),
        instances=int(region.get("instances", 0)),
        complete=bool(region.get("complete")),
        error=region.get("error"),
    )


def _account_summaries(accounts: Mapping[str, Any]) -> dict[str, AccountSummary]:
    return {
        account: AccountSummary(
            name=entry.get("name"),
            complete=bool(entry.get("complete")),
            error=entry.get("error"),
            services=int(entry.get("services", 0)),
            instances=int(entry.get("instances", 0)),
            regions={name: _region_summary(region) for name, region in entry.get("regions", {}).items()},
        )
        for account, entry in accounts.items()
    }


async def scan_with_ray(
    config: ScanConfig, target: DirectoryTarget, stderr: Console, interrupts: Interrupts
) -> ScanResult:
    """The Ray engine's scan into ``target`` (run by ``scanner.cli.scan.run`` on its event loop)."""
    from scanner.cli.scan import ScanResult

    engine = config.engine
    interrupted = False
    scanning: anyio.CancelScope | None = None

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        # Scanning: the driver stops every worker, and the units not committed keep their previous
        # entry; the simulator (if any) is still closed normally. Before: nothing written yet.
        (scanning or scope).cancel()

    with anyio.CancelScope() as scope, interrupts.stopping(stop):
        ray_start = _RayStart(engine.ray_address)  # ConfigError now if Ray is not installed
        try:
            async with AsyncExitStack() as stack:
                plan = await _plan_while_ray_starts(config, stack, ray_start)
                if plan.fatal is not None:  # the organisation cannot be listed, or no account planned
                    return ScanResult(summary=plan.summary, error=str(plan.fatal), fatal=True)
                units = sizes_from(plan.units, target.directory)  # biggest first, if scanned before
                run = _Run(target, units, config.shard, plan.roster, enabled=config.progress)
                summary: DistributedSummary | None = None
                with anyio.CancelScope() as scanning:
                    run.begin()  # the rates and elapsed time count from here, not from Ray's start
                    async with anyio.create_task_group() as tg:
                        if config.progress and run.planned:
                            tg.start_soon(_show_progress, run, stderr, plan.roster is not None)
                        summary = await scan_with_ray_async(
                            plan.workers,
                            target.directory.path,
                            units=units,
                            format=config.fmt,
                            params=config.scan_params(),
                            workers=engine.workers,
                            units_per_worker=engine.units_per_worker,
                            ray_address=engine.ray_address,
                            resume=config.resume,
                            on_event=run.on_event,
                            shard=config.shard,
                            roster=plan.roster,
                        )
                        tg.cancel_scope.cancel()
                scanning = None
                log.info(
                    "scan directory %s: %d region(s) listed by this run",
                    target.directory.path,
                    len(run.planned),
                )
                if summary is None:
                    # Stopped: the units the workers committed stay, the others keep their previous
                    # entry (--resume).
                    return ScanResult(summary=RaySummary.of(run.stopped()), interrupted=True)
                return ScanResult(summary=RaySummary.of(summary), interrupted=interrupted)
        finally:
            if ray_start.owned:
                _stop_ray()
    return ScanResult(interrupted=True)  # stopped before the scan began


async def _show_progress(run: _Run, stderr: Console, accounts: bool) -> None:
    """A local scan's progress display (or its log line, off a terminal), fed by the workers'
    live counters: the driver asks each busy worker for them every 0.2 s."""
    if stderr.is_terminal:
        with TerminalProgress(run.statistics, stderr, accounts=accounts) as display:
            await display.run()
    else:
        await LogProgress(run.statistics).run()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the driver found before handing units out: the workers' configuration, the units, and
    in an organisation scan its roster (or, when even that failed, the summary and the error)."""

    workers: WorkerScanConfig
    units: list[WorkUnit]
    roster: OrgRoster | None = None
    summary: ScanSummary | None = None
    fatal: BaseException | None = None


async def _plan(config: ScanConfig, stack: AsyncExitStack) -> _Plan:
    """The workers' configuration, and the units, found as a local scan finds them."""
    org: dict[str, Any] = {}
    if config.simulate:
        simulator = await start_simulator(config.simulate, config.regions, stack)
        endpoints: dict[str, str] = dict(simulator.endpoints)
        keys = functools.partial(StaticCredentials, simulator.access_key_id, simulator.access_key_secret)
        source: Callable[[], CredentialsProvider] | None = keys
        credentials: CredentialsProvider = keys()
        if config.accounts is not None:  # an org preset: scanned as --org does
            org = {
                "sts_endpoint": simulator.sts_endpoint,
                "resourcemanager_endpoint": simulator.resourcemanager_endpoint,
            }
    else:
        endpoints = dict(config.endpoints)
        source = None
        credentials = DefaultCredentials(config.profile)
        log.debug("using %r", await credentials.get_credentials())  # fail now, before any request
    if config.accounts is None:
        workers = worker_config(config, endpoints=endpoints, credentials=source)
        async with workers.scanner(credentials) as scanner:
            regions = await _regions(scanner, config)
        return _Plan(workers, [WorkUnit(None, region) for region in regions])
    options = {**config.account_options, **org}
    roster, summary, fatal = await _org_roster(config, credentials, endpoints, options)
    if fatal is not None:
        return _Plan(worker_config(config), [], summary=summary, fatal=fatal)
    assert roster is not None
    workers = worker_config(
        config,
        endpoints=endpoints,
        credentials=source,
        accounts=_assumed_roles(config, roster, source, options),
        per_account=options.get("concurrency_per_account"),
    )
    return _Plan(workers, roster.units(), roster=roster)


async def _org_roster(
    config: ScanConfig,
    credentials: CredentialsProvider,
    endpoints: Mapping[str, str],
    options: dict[str, Any],
) -> tuple[OrgRoster | None, ScanSummary | None, BaseException | None]:
    """The organisation's accounts and each one's regions, as a local scan finds them: the same
    ``Scanner`` lists the organisation (ListAccounts, or the accounts file; members not in a success
    status skipped), assumes each account's role and lists its regions, and lists no unit.

    So the driver assumes each role once, paced by the local engine's AssumeRole limiter, before
    any worker starts; the workers then assume the roles of the accounts they take, each within
    its share of ``DEFAULT_ASSUME_ROLE_RATE`` (``scanner.distributed.runner``): the two never
    overlap in time, so the management account's one AssumeRole quota sees one limit at a time.
    An account whose role cannot be assumed (or whose regions cannot be listed) is known here: it
    gets no unit, and the summary names it as a local scan does.
    """
    scanner = Scanner(
        credentials=credentials,
        endpoints=dict(endpoints) or None,
        **config.scanner_options(),
        accounts=config.accounts,
        **options,
    )
    regions: dict[str, tuple[str, ...]] = {}
    fatal: BaseException | None = None
    async with scanner:
        stream = scanner.scan(regions=config.regions, units=lambda account, region: False)
        try:
            async with contextlib.aclosing(stream.events()) as events:
                async for item in events:
                    if isinstance(item, UnitsPlanned) and item.account is not None:
                        regions[item.account] = item.regions
        except ScannerError as exc:
            fatal = exc
        fatal = fatal or stream.fatal
        summary = stream.summary
    if fatal is not None:
        return None, summary, fatal
    accounts: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    failed: dict[str, str] = {}
    for account, entry in (summary.accounts or {}).items():
        accounts[account] = (entry.name, regions.get(account, ()))
        if account not in regions:
            failed[account] = entry.error or "not scanned"
    roster = OrgRoster(
        accounts=accounts,
        failed=failed,
        failures=tuple(failure.to_dict() for failure in summary.failures),
        skipped=summary.skipped_accounts,
    )
    log.info(
        "organisation: %d account(s) to scan (%d unit(s)), %d could not be planned, %d skipped (status)",
        len(accounts) - len(failed),
        sum(len(r) for _, r in accounts.values()),
        len(failed),
        len(roster.skipped),
    )
    return roster, summary, None


def _assumed_roles(
    config: ScanConfig,
    roster: OrgRoster,
    source: Callable[[], CredentialsProvider] | None,
    options: Mapping[str, Any],
) -> AssumedRoleSource:
    """How the workers assume each account's role: as the local scan would (role name or ARN,
    ExternalId, session name and duration, STS endpoint)."""
    accounts = config.accounts
    role_arns: dict[str, str] = {}
    external_ids: dict[str, str] = {}
    # What is not given keeps AssumedRoleSource's defaults, the local scan's.
    given: dict[str, Any] = {
        key: options[key] for key in ("role_session_name", "role_duration") if key in options
    }
    if isinstance(accounts, Organization):
        given.update(role_name=accounts.role_name, external_id=accounts.external_id)
    elif accounts is not None:
        for account in accounts:
            if account.id in roster.accounts:
                target = account.target()
                role_arns[account.id] = target.role_arn
                if target.external_id is not None:
                    external_ids[account.id] = target.external_id
    return AssumedRoleSource(
        source=source,
        profile=config.profile,
        role_arns=role_arns,
        external_ids=external_ids,
        sts_endpoint=options.get("sts_endpoint"),
        **given,
        timeouts=config.timeouts,
    )


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


class _RayStart:
    """Ray started (or joined), as ``scan_with_ray_async`` would, in a thread while the driver plans.

    Planning an organisation scan (``_plan``: ListAccounts, an AssumeRole and a DescribeRegions an
    account, paced by STS's quota) takes tens of seconds for 1,000 accounts, and Ray's start on this
    machine 3.5-9 s (joining a cluster about a second): done one after the other, the scan waited for
    both. ``ray.init`` blocks, so it runs in a worker thread (it then leaves the process's signal
    handlers alone: from the main thread it puts its own on SIGTERM, an exit without the summary).
    Ray starts even when the plan then finds nothing to scan (every unit complete, ``--resume``), and
    is stopped at once; a plan that fails waits for Ray's start to end before it is reported.
    """

    def __init__(self, address: str | None) -> None:
        if address is None:
            keep_ray_on_loopback()
        try:
            from scanner.distributed.ray_engine import init_ray
        except ImportError as exc:
            raise ConfigError(f"{RAY_EXTRA_HINT} ({exc})") from None
        self._init = init_ray
        self.address = address
        #: Whether this process started or joined Ray (``ray.shutdown`` is then ours); set by the
        #: thread itself, so that a cancelled wait does not lose it.
        self.owned = False
        self._error: Exception | None = None

    async def run(self) -> None:
        """Start Ray in a thread; an error is kept for ``check`` (never raised here)."""
        try:
            await anyio.to_thread.run_sync(self._start)
        except Exception as exc:
            self._error = exc

    def _start(self) -> None:
        started = time.monotonic()
        with _without_ray_thread_warning():
            self.owned = self._init(self.address)
        where = "started on this machine (loopback only)"
        if self.address is not None:
            where = f"joined at {self.address}"
        log.info(
            "Ray %s in %.1fs",
            where if self.owned else "already running in this process",
            time.monotonic() - started,
        )

    def check(self) -> None:
        """Raise the error that kept Ray from starting, if any."""
        if self._error is not None:
            raise self._error


async def _plan_while_ray_starts(config: ScanConfig, stack: AsyncExitStack, ray_start: _RayStart) -> _Plan:
    """``_plan``, while ``ray_start`` starts Ray; the plan once both are done (errors: the plan's
    first, then Ray's)."""
    planned: list[_Plan] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ray_start.run)
        try:
            planned.append(await _plan(config, stack))
        except Exception as exc:  # raised after the group: a task group would wrap it
            failed.append(exc)
    if failed:
        raise failed[0]
    ray_start.check()
    return planned[0]


class _RayThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


@contextlib.contextmanager
def _without_ray_thread_warning() -> Iterator[None]:
    """Drop the warning ``ray.init`` logs when not called from the main thread (wanted, see ``_RayStart``)."""
    logger = logging.getLogger("ray._private.worker")
    quiet = _RayThreadWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


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
    """The units of this run, and its progress: the live counters, and a units line as each unit ends."""

    def __init__(
        self,
        target: DirectoryTarget,
        units: list[WorkUnit],
        shard: Callable[[str | None, str], bool] | None,
        roster: OrgRoster | None,
        *,
        enabled: bool,
    ) -> None:
        plan = target.plan
        accept = target.units(shard)
        mine = [unit for unit in units if shard is None or shard(unit.account, unit.region)]
        self.planned = [unit for unit in units if accept(unit.account, unit.region)]
        kept = plan.complete if plan is not None else set()
        self._kept = sum(1 for unit in mine if unit.unit in kept)
        self._kept_records = plan.records if plan is not None else 0
        self._roster = roster
        accounts = done = 0
        if roster is not None:
            accounts = len(roster.accounts)
            busy = {unit.account for unit in self.planned}
            done = sum(1 for account in roster.accounts if account not in busy)
        self._progress = Progress(
            len(self.planned), units=self.planned, accounts=accounts, accounts_done=done
        )
        self._enabled = enabled
        self._started = time.monotonic()
        self._reports: list[UnitReport] = []

    def begin(self) -> None:
        self._started = time.monotonic()

    def statistics(self) -> ScanStatistics:
        """The scan's live counters, as a local scan's ``statistics()`` (for its progress displays)."""
        return self._progress.statistics(time.monotonic() - self._started)

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
            roster=self._roster,
        )
