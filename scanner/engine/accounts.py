"""A scan of several accounts (issue 13): one ``ScanJob`` per account, a bounded number at once.

Shape (every task lives in a task group owned by the one above it)::

    AccountScan.run
    ├── roster()                      the accounts to scan, and the members skipped (their status)
    └── at most accounts_in_flight × _scan_account
        └── open(account)             its credentials (AssumeRole), its EasApi
            └── ScanJob.run           regions → services → listings, as a single-account scan,
                                      its records tagged with AccountId

- **Fairness and memory**: ``accounts_in_flight`` accounts run at once (a semaphore taken before
  an account's task is spawned, so a 10,000-account organisation never has more tasks than
  that); each account's requests are capped by its own ``Concurrency`` (``per_account``), and
  all of them by one set of global slots (``Concurrency.total``).
- **Rate limits**: each account gets a fresh registry (``limiters()``), so the scopes are
  (account, region, action); an account's limiters are dropped when it ends. The registries
  learn together (``PeerRates``): an API's limit is typically the same in every account, so an
  account's scope starts from what its peers' scopes learned, not from slow start.
- **Failures**: an account whose ``open`` fails (its role cannot be assumed) or whose regions all
  refuse is incomplete, named with its error code; the others go on. Fatal, only: the roster
  cannot be read, no account could be scanned, or fail-fast.

The engine knows nothing of STS or HTTP: ``AccountsPort`` (``scanner.org.session``) does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from scanner.clock import Clock
from scanner.engine.config import Concurrency, Consistency, RetryPolicy
from scanner.engine.gate import LimiterRegistry, Slots
from scanner.engine.pacing import ClientRateLimiters, PeerRates
from scanner.engine.ports import EasApi
from scanner.engine.scheduler import ScanItem, ScanJob, ScanPlan, ScanRun
from scanner.engine.stats import (
    AccountSummary,
    Failure,
    RegionSummary,
    ScanStatistics,
    ScanSummary,
    StatisticsTotals,
)
from scanner.errors import RequestError, ScanFailedError, ScannerError

__all__ = [
    "DEFAULT_ACCOUNTS_IN_FLIGHT",
    "AccountPlan",
    "AccountRoster",
    "AccountScan",
    "AccountsPort",
    "per_account_concurrency",
]

DEFAULT_ACCOUNTS_IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class AccountPlan:
    """One account to scan. ``regions`` None: the scan's regions."""

    account_id: str
    name: str | None = None
    regions: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class AccountRoster:
    """The accounts to scan, and the members left out for their status, as (id, status)."""

    accounts: tuple[AccountPlan, ...]
    skipped: tuple[tuple[str, str], ...] = ()


class AccountsPort(Protocol):
    """What the engine needs to scan several accounts (``scanner.org.session.OrgSession``)."""

    async def roster(self) -> AccountRoster:
        """The accounts; a ``ScannerError`` when they cannot be listed."""
        ...

    def open(self, account: AccountPlan) -> AbstractAsyncContextManager[EasApi]:
        """The account's API, its credentials obtained on entry (a ``ScannerError`` if they
        cannot be), released on exit."""
        ...


def per_account_concurrency(concurrency: Concurrency, per_account: int) -> Concurrency:
    """``concurrency`` with no bound above ``per_account`` (one account's share).

    Listings too: a listing open beyond the account's request slots only waits for one, and
    holds its tasks, its stream and its names meanwhile (about 10 KB each). With 30 services a
    region, an account in flight held ~45 open listings (0.9 MB); capped, at most
    ``per_account`` a region.
    """
    return replace(
        concurrency,
        total=min(concurrency.total, per_account),
        per_region=min(concurrency.per_region, per_account),
        pages_per_listing=min(concurrency.pages_per_listing, per_account),
        services_per_region=min(concurrency.services_per_region, per_account),
        long_listings_per_region=min(concurrency.long_listings_per_region, per_account),
        long_listings=min(concurrency.long_listings, per_account),
    )


class _Account:
    __slots__ = ("done", "error", "failure", "job", "plan")

    def __init__(self, plan: AccountPlan) -> None:
        self.plan = plan
        self.job: ScanJob | None = None
        self.error: str | None = None
        self.failure: Failure | None = None
        self.done = False


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, RequestError):
        return exc.kind
    cause = exc.__cause__
    if isinstance(cause, RequestError):
        return cause.kind
    return type(exc).__name__


def _message_of(exc: BaseException) -> str:
    return str(exc.message) if isinstance(exc, RequestError) else str(exc)


class AccountStats:
    """The live view of an ``AccountScan``: its accounts' jobs' counters, summed on demand."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.accounts: dict[str, _Account] = {}
        self.skipped: tuple[tuple[str, str], ...] = ()
        # Counters of accounts already ended (their jobs are dropped, so memory stays bounded).
        self._ended = StatisticsTotals()

    def snapshot(self, now: float) -> ScanStatistics:
        totals = StatisticsTotals()
        totals.add(self._ended)
        for account in self.accounts.values():
            if account.job is not None and not account.done:
                totals.add(account.job.stats.snapshot(now))
        return ScanStatistics(
            elapsed_s=now - self.started_at,
            requests=totals.requests,
            retries=totals.retries,
            throttled=totals.throttled,
            bytes_received=totals.bytes_received,
            records=totals.records,
            failures=totals.failures + sum(1 for a in self.accounts.values() if a.failure is not None),
            regions=dict(totals.regions),
            accounts_total=len(self.accounts),
            accounts_done=sum(1 for a in self.accounts.values() if a.done),
        )

    def ended(self, account: _Account, now: float) -> None:
        if account.job is not None:
            self._ended.add(account.job.stats.snapshot(now))


class AccountScan(ScanRun):
    """A scan of several accounts: produces batches into ``send`` and closes it when done.

    Its lifecycle (``run``, ``stop``, ``fatal``, ``summary``, ``finished``) is ``ScanRun``'s, as
    ``ScanJob``'s is; ``stats`` is its own. See the module docstring.
    """

    def __init__(
        self,
        accounts: AccountsPort,
        plan: ScanPlan,
        send: MemoryObjectSendStream[ScanItem],
        *,
        concurrency: Concurrency,
        per_account: int,
        accounts_in_flight: int = DEFAULT_ACCOUNTS_IN_FLIGHT,
        consistency: Consistency,
        retry_policy: RetryPolicy,
        limiters: Callable[[], LimiterRegistry],
        clock: Clock,
        rng: random.Random,
        fail_fast: bool = False,
    ) -> None:
        super().__init__(send)
        self._accounts = accounts
        self._plan = plan
        self._concurrency = per_account_concurrency(concurrency, per_account)
        self._global_slots = Slots(concurrency.total)
        self._in_flight = accounts_in_flight
        self._consistency = consistency
        self._retry_policy = retry_policy
        self._limiters = limiters
        self._peers = PeerRates()
        self._clock = clock
        self._rng = rng
        self._fail_fast = fail_fast
        self.stats = AccountStats(clock.monotonic())
        # Summaries of the accounts that ended, in the order they were listed.
        self._summaries: dict[str, ScanSummary] = {}

    # --- the run -------------------------------------------------------------------------------

    async def _produce(self) -> None:
        try:
            roster = await self._accounts.roster()
        except ScannerError as exc:
            raise ScanFailedError(f"could not list the accounts to scan: {exc}") from exc
        self.stats.skipped = roster.skipped
        for plan in roster.accounts:
            self.stats.accounts[plan.account_id] = _Account(plan)
        if not roster.accounts:
            skipped = f" ({len(roster.skipped)} member(s) skipped for their status)" if roster.skipped else ""
            raise ScanFailedError(f"no account to scan{skipped}")
        slots = anyio.Semaphore(self._in_flight)
        async with anyio.create_task_group() as tg:
            for account in self.stats.accounts.values():
                await slots.acquire()  # spawned only when it may run: tasks stay bounded
                tg.start_soon(self._scan_account, account, slots)

    async def _scan_account(self, account: _Account, slots: anyio.Semaphore) -> None:
        plan = account.plan
        try:
            try:
                async with self._accounts.open(plan) as api:
                    job = account.job = self._job(api, plan)
                    await job.run()
            except ScannerError as exc:  # its role cannot be assumed, or it cannot be reached
                self._account_failed(account, exc)
                return
            self._account_ended(account, job)
        finally:
            job_summary = account.job.summary if account.job is not None else None
            if job_summary is not None:  # stopped part way: what it did still counts
                self._summaries.setdefault(plan.account_id, job_summary)
            account.done = True
            self.stats.ended(account, self._clock.monotonic())
            account.job = None
            slots.release()

    def _job(self, api: EasApi, plan: AccountPlan) -> ScanJob:
        scan_plan = self._plan if plan.regions is None else replace(self._plan, regions=plan.regions)
        limiters = self._account_limiters()
        return ScanJob(
            api,
            scan_plan,
            self._send.clone(),
            concurrency=self._concurrency,
            consistency=self._consistency,
            retry_policy=self._retry_policy,
            rate_limiters=limiters,
            clock=self._clock,
            rng=self._rng,
            fail_fast=self._fail_fast,
            account=plan.account_id,
            global_slots=self._global_slots,
        )

    def _account_limiters(self) -> LimiterRegistry:
        """A new account's registry: scopes (account, region, action), learning with its peers."""
        limiters = self._limiters()
        if isinstance(limiters, ClientRateLimiters):
            limiters.join(self._peers)
        return limiters

    def _account_failed(self, account: _Account, exc: BaseException) -> None:
        code = _code_of(exc)
        message = _message_of(exc)
        account.error = f"{code}: {message}"
        action = exc.action if isinstance(exc, RequestError) else None
        account.failure = Failure(
            region=None,
            service=None,
            code=code,
            message=message,
            action=action,
            account=account.plan.account_id,
        )
        if self._fail_fast:
            self._abort(exc)

    def _account_ended(self, account: _Account, job: ScanJob) -> None:
        summary = job.summary
        assert summary is not None
        self._summaries[account.plan.account_id] = summary
        fatal = job.fatal
        if fatal is not None:
            if isinstance(fatal, ScanFailedError) and not self._fail_fast:
                # Every region refused, or its regions could not be listed: this account only.
                first = next((f for f in summary.failures if f.service is None), None)
                code = first.code if first is not None else _code_of(fatal)
                account.error = f"{code}: {fatal}"
                if not summary.failures:
                    account.failure = Failure(
                        region=None,
                        service=None,
                        code=code,
                        message=str(fatal),
                        account=account.plan.account_id,
                    )
            else:
                self._abort(fatal)
        elif job.cancelled and not self.cancelled:
            self.stop()  # the consumer closed the stream

    def _check_ended(self) -> None:
        """No account could be scanned: every one ended in an error."""
        if self.fatal is not None or self.cancelled:
            return
        accounts = self.stats.accounts
        if accounts and all(a.error is not None for a in accounts.values()):
            reasons = "; ".join(f"{a.plan.account_id}: {a.error}" for a in list(accounts.values())[:5])
            more = f" (and {len(accounts) - 5} more)" if len(accounts) > 5 else ""
            self.fatal = ScanFailedError(f"no account could be scanned ({reasons}{more})")

    # --- the summary ---------------------------------------------------------------------------

    def _summarize(self) -> ScanSummary:
        return self._merge(self._clock.monotonic())

    def _merge(self, now: float) -> ScanSummary:
        cancelled = self.cancelled or self.fatal is not None
        accounts: dict[str, AccountSummary] = {}
        regions: dict[str, RegionSummary] = {}
        failures: list[Failure] = []
        verdicts: dict[str, int] = {}
        notable: list[tuple[str, str, str]] = []
        missing: set[str] | None = None
        records = requests = retries = throttled = bytes_received = 0
        for account_id, account in self.stats.accounts.items():
            summary = self._summaries.get(account_id)
            if account.failure is not None:
                failures.append(account.failure)
            if summary is None:
                accounts[account_id] = AccountSummary(
                    name=account.plan.name,
                    complete=False,
                    error=account.error or ("cancelled" if cancelled else "not scanned"),
                    services=0,
                    instances=0,
                    regions={},
                )
                continue
            accounts[account_id] = AccountSummary(
                name=account.plan.name,
                complete=summary.complete and account.error is None,
                error=account.error or _first_error(summary),
                services=sum(r.services for r in summary.regions.values()),
                instances=summary.records,
                regions=summary.regions,
            )
            records += summary.records
            requests += summary.requests
            retries += summary.retries
            throttled += summary.throttled
            bytes_received += summary.bytes_received
            failures.extend(summary.failures)
            for verdict, count in summary.verdicts.items():
                verdicts[verdict] = verdicts.get(verdict, 0) + count
            notable.extend(summary.notable_services)
            if self._plan.services is not None:
                gone = set(summary.missing_services)
                missing = gone if missing is None else missing & gone
            for name, region in summary.regions.items():
                held = regions.get(name)
                regions[name] = (
                    region
                    if held is None
                    else RegionSummary(
                        services=held.services + region.services,
                        instances=held.instances + region.instances,
                        complete=held.complete and region.complete,
                        error=held.error or region.error,
                    )
                )
        return ScanSummary(
            complete=not cancelled and bool(accounts) and all(a.complete for a in accounts.values()),
            records=records,
            duration_s=now - self.stats.started_at,
            requests=requests,
            retries=retries,
            throttled=throttled,
            regions=regions,
            failures=tuple(failures),
            verdicts=verdicts,
            notable_services=tuple(notable),
            missing_services=tuple(sorted(missing or ())),
            cancelled=cancelled,
            bytes_received=bytes_received,
            accounts=accounts,
            skipped_accounts=self.stats.skipped,
        )


def _first_error(summary: ScanSummary) -> str | None:
    if summary.complete:
        return None
    for name, region in summary.regions.items():
        if region.error is not None:
            return f"{name}: {region.error}"
    return "cancelled" if summary.cancelled else "incomplete"
