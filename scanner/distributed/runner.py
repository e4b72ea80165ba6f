"""What runs inside each worker: a ``UnitRunner`` that scans one unit into the scan directory.

A worker opens its runner once (``RunnerFactory.open``) and keeps it for every unit it takes: one
HTTP session and one set of rate limiters per account (a ``Scanner``), and, in an organisation
scan, one credential cache. The factory is pickled to reach the workers, so it holds plain
configuration (``WorkerScanConfig``), never an open session or credentials already fetched.

The runner is called for several units at once (the driver's ``units_per_worker``). Units of one
account share that account's ``Scanner``: its connection pool (sized, as in a local organisation
scan, by ``concurrency_per_account``) and its rate limiters, which are per (region, action), so each
unit keeps its own quota's pace. Each unit has its own scan stream (``buffer_pages`` pages at most
waiting) and its own part writer (``PartRouter``), committed when the unit ends.

**AssumeRole: a per-worker share of the quota.** STS's AssumeRole quota (about 100 calls/s) is one
bucket per *calling* account, so the calls of every worker of an organisation scan count against
the management account's one limit. Each worker gets ``WorkerSlot.assume_role_rate``, the total
divided by the number of workers, and paces its own AssumeRole calls to it. The alternative, a
named Ray actor holding one cluster-wide token bucket, would put a cross-process call on the path
of every AssumeRole and make every worker depend on one more actor staying alive. The share costs
nothing on the hot path and cannot be lost; what it gives up (an idle worker's unused share is not
lent to a busy one) matters little: a worker assumes an account's role once, when it takes the
account's first unit (then refreshes it before it expires, ``scanner.org.cache``), and the driver
keeps an account's units on one worker while fresh accounts remain (``driver``), so a scan makes
about one AssumeRole call per account, spread over its whole length.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from scanner import (
    Concurrency,
    Consistency,
    CredentialsProvider,
    DefaultCredentials,
    RateLimit,
    RetryPolicy,
    Scanner,
    ScannerError,
    Timeouts,
)
from scanner.client.transport import ConnectionLimits
from scanner.distributed.units import UnitReport, WorkUnit
from scanner.engine.accounts import per_account_concurrency
from scanner.engine.stats import ScanStatistics
from scanner.scandir import PartRouter, ScanDirectory, ScanParams, outcomes_from_summary
from scanner.scanner import DEFAULT_CONCURRENCY_PER_ACCOUNT

__all__ = [
    "DEFAULT_ASSUME_ROLE_RATE",
    "DEFAULT_UNITS_PER_WORKER",
    "AccountCredentialsSource",
    "DirectoryRunnerFactory",
    "RunnerFactory",
    "UnitRunner",
    "WorkerScanConfig",
    "WorkerSlot",
    "assume_role_share",
    "live_unit",
]

#: Units a worker scans at once (``scan_with_ray(units_per_worker=...)``, ``--units-per-worker``).
#: A unit in flight costs 1-2.5 MB, more for bigger units (measured: 16 units of 3,000 records,
#: each of its own account, peak 18 MB above one unit's; a Ray worker's peak RSS 145 MB with one
#: unit of 7,500 records at a time, 164 MB with 8, 183 MB with 16): 8 add 10-20 MB. At the
#: realistic quota (30 requests/s a unit) a 1,000-record unit takes ~0.78 s for ~25 ms of CPU:
#: 8 units make a worker 8 times as fast as one at a time, and leave it three quarters idle (31
#: would saturate its core; raise it for big organisations held by their quotas). Not more by
#: default: where the CPU is the limit (the ``scaleout`` benchmark, 32 units of uneven sizes on
#: 2 workers) 16 slots cost 7-15% against one (all the units handed out at once are a static
#: split, and 16 scans at once took ~30 µs of CPU a record against ~23), while 8 kept half the
#: units queued and measured level with one. Fewer slots also bound what a lost worker or a
#: Ctrl-C throws away. (The local engine's 32 accounts in flight are a whole process's; a worker
#: is one of several on a machine.)
DEFAULT_UNITS_PER_WORKER = 8

#: AssumeRole calls per second for the whole scan (STS allows about 100/s per calling account,
#: shared with every other tool of the management account: leave them room).
DEFAULT_ASSUME_ROLE_RATE = 20.0

#: Scans one unit inside a worker and reports how it ended.
UnitRunner = Callable[[WorkUnit], Awaitable[UnitReport]]

#: Where the unit being run publishes its live counters (``live_unit``); set by the worker.
_LIVE: ContextVar[Callable[[Callable[[], ScanStatistics]], None] | None] = ContextVar(
    "scanner_distributed_live_unit", default=None
)


@contextlib.contextmanager
def live_unit(publish: Callable[[Callable[[], ScanStatistics]], None]) -> Iterator[None]:
    """While the block runs, a runner called in it hands ``publish`` its scan's ``statistics``.

    The worker (``scanner.distributed.worker``) sets it around each unit, and answers the driver's
    progress polls from the source it got: a snapshot of the live counters, taken only when asked,
    so a unit's pages cost nothing more than a local scan's. A runner that publishes nothing
    (a custom ``RunnerFactory``) leaves the progress moving unit by unit.
    """
    token = _LIVE.set(publish)
    try:
        yield
    finally:
        _LIVE.reset(token)


def assume_role_share(total_rate: float, workers: int) -> float:
    """Each worker's AssumeRole calls per second: ``total_rate`` split evenly over ``workers``."""
    if not total_rate > 0 or workers < 1:
        raise ValueError("the AssumeRole rate must be > 0 and the workers >= 1")
    return total_rate / workers


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Where a runner runs: the worker's index among ``workers``, and its share of shared quotas."""

    index: int
    workers: int
    assume_role_rate: float


class RunnerFactory(Protocol):
    """Picklable; ``open`` is called once in each worker (each worker process, after a restart)."""

    def open(self, slot: WorkerSlot) -> AbstractAsyncContextManager[UnitRunner]: ...


class AccountCredentialsSource(Protocol):
    """Organisation scans: builds, inside a worker, each member account's credentials provider
    (e.g. an STS client and a ``scanner.org.RoleCredentialsCache`` paced at ``slot.assume_role_rate``).
    Picklable, like the factory that holds it."""

    def open(self, slot: WorkerSlot) -> AbstractAsyncContextManager[Callable[[str], CredentialsProvider]]: ...


@dataclass(frozen=True, kw_only=True)
class WorkerScanConfig:
    """What each worker needs to build its ``Scanner``: ``Scanner``'s and ``scan()``'s arguments.

    ``credentials``: a picklable zero-argument callable building the provider *in the worker*
    (default: ``DefaultCredentials(profile)``, the credential chain of the worker's own machine:
    environment, profile file, the instance's RAM role). A factory holding a static key sends that
    key to every worker inside the pickled task, through the cluster's object store: prefer the
    default chain on a real cluster. ``account_credentials``: for units that name an account;
    their scans are then capped at ``concurrency_per_account`` requests in flight (default
    ``DEFAULT_CONCURRENCY_PER_ACCOUNT``, as ``Scanner(accounts=...)``).
    """

    credentials: Callable[[], CredentialsProvider] | None = None
    profile: str | None = None
    account_credentials: AccountCredentialsSource | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    endpoint_type: str = "public"
    allow_insecure_http: bool = False
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    retry: RetryPolicy | None = None
    timeouts: Timeouts | None = None
    connection_limits: ConnectionLimits | None = None
    consistency: Consistency | None = None
    home_region: str | None = None
    services: Sequence[str] | None = None
    service_filter: str | None = None
    instance_filters: Mapping[str, Any] = field(default_factory=dict)
    concurrency_per_account: int | None = None

    def scanner(self, credentials: CredentialsProvider) -> Scanner:
        return Scanner(
            credentials=credentials,
            endpoints=self.endpoints,
            endpoint_type=self.endpoint_type,
            allow_insecure_http=self.allow_insecure_http,
            concurrency=self.scan_concurrency(),
            rate_limit=self.rate_limit,
            retry=self.retry,
            timeouts=self.timeouts,
            connection_limits=self.connection_limits,
            consistency=self.consistency,
            home_region=self.home_region,
        )

    def scan_concurrency(self) -> Concurrency | None:
        """The concurrency each scan of a unit gets: an account unit's capped per account."""
        if self.account_credentials is None:
            return self.concurrency
        per_account = self.concurrency_per_account or DEFAULT_CONCURRENCY_PER_ACCOUNT
        return per_account_concurrency(self.concurrency or Concurrency(), per_account)

    def scan_arguments(self) -> dict[str, Any]:
        return {
            "services": None if self.services is None else list(self.services),
            "service_filter": self.service_filter,
            "filters": dict(self.instance_filters),
        }


@dataclass(frozen=True, slots=True)
class DirectoryRunnerFactory:
    """The default runner: scans a unit's region with a ``Scanner`` into its part of ``output_dir``.

    Each unit is committed when its listing ends, with the outcome a local scan gives it
    (``outcomes_from_summary``): ``complete``, or ``incomplete`` with its failures. An error that
    ends the unit's scan early (refused credentials, say) commits it ``incomplete`` with that error.
    ``run_id``: the driver's, so that every entry names the run that wrote it.
    """

    config: WorkerScanConfig
    output_dir: str
    params: ScanParams
    run_id: str
    #: Scanners (HTTP session, pool, rate limiters) a worker keeps open, one per account; more while
    #: more accounts have units in flight there.
    max_open_accounts: int = 8

    @contextlib.asynccontextmanager
    async def open(self, slot: WorkerSlot) -> AsyncIterator[UnitRunner]:
        directory = ScanDirectory.create_or_open(Path(self.output_dir), self.params, run_id=self.run_id)
        async with AsyncExitStack() as stack:
            accounts: Callable[[str], CredentialsProvider] | None = None
            if self.config.account_credentials is not None:
                accounts = await stack.enter_async_context(self.config.account_credentials.open(slot))
            # The open Scanners, least recently used first; each is held by its own owner task.
            scanners: OrderedDict[str | None, _Owned] = OrderedDict()
            lock = anyio.Lock()

            async def own(account: str | None, *, task_status: TaskStatus[_Owned]) -> None:
                # A Scanner is entered and left by one task (its task group demands it): this one,
                # whichever task asked for the Scanner first.
                async with self.config.scanner(self._credentials(account, accounts)) as scanner:
                    owned = _Owned(scanner)
                    task_status.started(owned)
                    await owned.closing.wait()

            async def scanner_for(account: str | None) -> _Owned:
                async with lock:
                    owned = scanners.get(account)
                    if owned is None:
                        # A worker moves from account to account: close the ones it used least
                        # recently (their sessions and pools), not keep hundreds open; never one
                        # that a unit in flight is using (so at most max(max_open_accounts, the
                        # units in flight) stay open).
                        idle = [key for key, held in scanners.items() if held.users == 0]
                        while len(scanners) >= self.max_open_accounts and idle:
                            scanners.pop(idle.pop(0)).closing.set()
                        owned = scanners[account] = await owners.start(own, account)
                    scanners.move_to_end(account)
                    owned.users += 1
                    return owned

            async def run(work: WorkUnit) -> UnitReport:
                owned = await scanner_for(work.account)
                try:
                    return await self._run(directory, owned.scanner, work)
                finally:
                    owned.users -= 1

            async with anyio.create_task_group() as owners:
                try:
                    yield run
                finally:
                    for owned in scanners.values():
                        owned.closing.set()

    def _credentials(
        self, account: str | None, accounts: Callable[[str], CredentialsProvider] | None
    ) -> CredentialsProvider:
        if account is not None:
            if accounts is None:
                raise ScannerError(f"unit of account {account}: no account_credentials configured")
            return accounts(account)
        if self.config.credentials is not None:
            return self.config.credentials()
        return DefaultCredentials(self.config.profile)

    async def _run(self, directory: ScanDirectory, scanner: Scanner, work: WorkUnit) -> UnitReport:
        started = time.monotonic()
        unit = work.unit
        # ``_account``: an account's records are tagged at their source, as a local organisation
        # scan tags them (``scanner.records.tag_instances``): the parts are the same bytes.
        scan = scanner.scan(regions=[work.region], _account=work.account, **self.config.scan_arguments())
        async with (
            scan as stream,
            PartRouter(directory, account=work.account) as router,
        ):
            publish = _LIVE.get()
            if publish is not None:
                publish(stream.statistics)
            summary: dict[str, Any]
            try:
                async for page in stream.batches():
                    await router.write(page)
                summary = stream.summary.to_dict()
                status, failures = outcomes_from_summary(summary, account=work.account, units=[unit])[unit]
            except ScannerError as exc:  # a fatal error of this unit's scan: it ends incomplete
                code = getattr(exc, "code", None) or type(exc).__name__
                failures = [{"region": work.region, "service": None, "code": code, "message": str(exc)}]
                status = "incomplete"
                summary = stream.summary.to_dict() if stream.finished else {}
            entry = await router.commit(work.account, work.region, status, failures)
        records = entry.records if entry is not None else 0
        return UnitReport(
            unit=work,
            status=status,
            records=records,
            requests=int(summary.get("requests", 0)),
            failures=tuple(failures),
            summary=summary,
            duration_s=time.monotonic() - started,
            statistics=stream.statistics(),
        )


class _Owned:
    __slots__ = ("closing", "scanner", "users")

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.closing = anyio.Event()
        #: Units in flight on this Scanner: it is not closed under them.
        self.users = 0
