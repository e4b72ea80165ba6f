"""``Scanner``: the library's entry point and the composition root that builds the defaults.

::

    async with Scanner(credentials=StaticCredentials(ak, secret),
                       endpoints={"cn-shanghai": "http://127.0.0.1:8001"}) as s:
        stream = s.scan(regions=["cn-shanghai"])
        async for record in stream:        # one dict per instance
            ...
        stream.summary                     # complete?, counts, failures

A Scanner owns one HTTP session and one task group. ``scan()`` does not block: it starts the scan
in that task group and returns a ``ScanStream`` to read records from. Leaving the ``async with``
block stops any scan still running; so does closing its stream (``await stream.aclose()`` or
``async with s.scan(...) as stream``).

Given ``accounts=`` (an ``Organization``, an accounts file, or a list of ``Account``), a Scanner
scans several accounts in one run (issue 13): ``credentials`` are then the management account's
(or whoever may assume the accounts' roles), each account is entered with STS ``AssumeRole``,
its records carry ``AccountId`` and ``stream.summary`` has ``accounts`` and ``skipped_accounts``.
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from scanner.client.api import EasClient
from scanner.client.credentials import CredentialsProvider, DefaultCredentials
from scanner.client.http import AsyncTransport
from scanner.client.transport import AiohttpTransport, ConnectionLimits, Timeouts
from scanner.clock import Clock, SystemClock
from scanner.eas.endpoints import EndpointResolver, EndpointType, validate_region
from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.engine.accounts import DEFAULT_ACCOUNTS_IN_FLIGHT, AccountScan
from scanner.engine.config import Concurrency, Consistency, RateLimit, RetryPolicy
from scanner.engine.events import Batch, ScanItem
from scanner.engine.gate import at_once_or_wait
from scanner.engine.pacing import ClientRateLimiters
from scanner.engine.ports import EasApi
from scanner.engine.scheduler import ScanJob, ScanPlan, UnitFilter
from scanner.engine.stats import ScanStatistics, ScanSummary
from scanner.errors import ConfigError, UsageError
from scanner.lifecycle import Lifecycle
from scanner.org.cache import RoleCredentialsCache, SimpleRetry
from scanner.org.resourcemanager import ResourceManagerClient
from scanner.org.rpc import RESOURCE_MANAGER, STS, RpcClient
from scanner.org.sources import Account, Organization, resolve_accounts
from scanner.org.sts import DEFAULT_DURATION_SECONDS, DEFAULT_ROLE_SESSION_NAME, StsClient
from scanner.orgsession import OrgSession
from scanner.records import encode_jsonl
from scanner.validation import require_positive

__all__ = ["DEFAULT_CONCURRENCY_PER_ACCOUNT", "DEFAULT_HOME_REGION", "BinarySink", "ScanStream", "Scanner"]

#: Where DescribeRegions is asked when no endpoint override says otherwise.
DEFAULT_HOME_REGION = "cn-shanghai"
#: Requests in flight for one account of a multi-account scan (``concurrency_per_account``).
DEFAULT_CONCURRENCY_PER_ACCOUNT = 16


class BinarySink(Protocol):
    """Anything with ``write(bytes)``, sync (a binary file) or async (an anyio file)."""

    def write(self, data: bytes, /) -> Any: ...


class ScanStream:
    """The records of one scan, as an async iterator of dicts (one per instance).

    Records arrive as the pages do, a page at a time through a small buffer, so a slow reader
    slows the scan instead of filling memory. When the iteration ends, ``summary`` says whether the
    inventory is complete. A fatal error (no credentials; every region refused; fail-fast) is
    raised from the iteration once the records before it have been delivered.
    """

    def __init__(
        self, job: ScanJob | AccountScan, receive: MemoryObjectReceiveStream[ScanItem], clock: Clock
    ) -> None:
        self._job = job
        self._receive = receive
        self._clock = clock
        self._batch: Batch = []
        self._index = 0
        self._raised = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        batch = self._batch
        index = self._index
        if index < len(batch):
            self._index = index + 1
            return batch[index]
        batch = await self._next_batch()
        self._batch = batch
        self._index = 1
        return batch[0]

    async def _next_batch(self) -> Batch:
        while True:
            item = await self._next_item()
            if isinstance(item, list) and item:
                return item

    async def _next_item(self) -> ScanItem:
        try:
            return await at_once_or_wait(self._receive.receive_nowait, self._receive.receive)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            await self._end()
            raise StopAsyncIteration from None

    async def events(self) -> AsyncGenerator[ScanItem, None]:
        """Batches and the events of units, in the order they happened (``scanner.events``).

        ``UnitsPlanned`` comes before the batches of its account; a unit's ``UnitEnded`` after its
        last batch, so a consumer can commit each (account, region) as soon as its listing ends.
        """
        if self._index < len(self._batch):
            rest, self._batch = self._batch[self._index :], []
            yield rest
        while True:
            try:
                item = await self._next_item()
            except StopAsyncIteration:
                return
            if not isinstance(item, list) or item:
                yield item

    async def batches(self) -> AsyncGenerator[Batch, None]:
        """The records a page at a time (cheaper than one by one for bulk consumers)."""
        if self._index < len(self._batch):
            rest, self._batch = self._batch[self._index :], []
            yield rest
        while True:
            try:
                yield await self._next_batch()
            except StopAsyncIteration:
                return

    async def write_to(self, sink: BinarySink) -> ScanSummary:
        """Write every record to ``sink`` as JSON Lines (orjson), a page per write; return the summary."""
        async for batch in self.batches():
            written = sink.write(encode_jsonl(batch))
            if inspect.isawaitable(written):
                await written
        return self.summary

    async def _end(self) -> None:
        await self._job.finished.wait()
        fatal = self._job.fatal
        if fatal is not None and not self._raised:
            self._raised = True
            raise fatal

    @property
    def finished(self) -> bool:
        return self._job.summary is not None

    @property
    def summary(self) -> ScanSummary:
        """How the scan ended: complete or not, counts, failures. Available once it has ended."""
        summary = self._job.summary
        if summary is None:
            raise UsageError(
                "the scan is still running: read the stream to its end (statistics() shows progress)"
            )
        return summary

    @property
    def fatal(self) -> BaseException | None:
        """The error that ended the scan early, if any (also raised from the iteration)."""
        return self._job.fatal

    def statistics(self) -> ScanStatistics:
        """A live snapshot of the scan's progress and counters."""
        return self._job.stats.snapshot(self._clock.monotonic())

    def close_nowait(self) -> None:
        """Stop the scan and release the stream without waiting for the producers to end."""
        if self._job.summary is None:
            self._job.stop()
        self._receive.close()

    async def aclose(self) -> None:
        """Stop the scan and drop what it has not delivered. The summary then says cancelled."""
        if self._job.summary is None:
            self._job.stop()
        self._receive.close()
        await self._job.finished.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Scanner:
    """Scans PAI-EAS fleets. One HTTP session and one set of rate limiters per Scanner.

    Every argument is keyword-only and optional:

    - ``credentials``: a ``CredentialsProvider`` (e.g. ``StaticCredentials``); default: the
      Alibaba Cloud default credential chain, with ``profile`` chosen from ``~/.aliyun/config.json``.
    - ``endpoints``: region → base URL overrides (a simulator, a proxy). With overrides and no
      ``regions`` given to ``scan``, the overridden regions are scanned.
    - ``endpoint_type``: ``"public"`` (default) or ``"vpc"``.
    - ``concurrency``, ``rate_limit``, ``retry``, ``timeouts``, ``consistency``: the knobs
      (``Concurrency``, ``RateLimit``, ``RetryPolicy``, ``Timeouts``, ``Consistency``);
      ``page_size`` and ``max_passes`` are a shorthand for ``consistency``.
    - ``connection_limits``: the largest response body read
      (``ConnectionLimits(max_response_bytes=...)``, 32 MiB by default) and the connection pool,
      whose sizes, unless given, follow ``concurrency`` (``total`` and ``per_region``).
    - ``fail_fast``: raise the first failure instead of recording it and carrying on.
    - ``transport``: what sends the HTTP requests (an ``AsyncTransport``, e.g.
      ``scanner.testing.MockTransport``); default: aiohttp, configured by ``timeouts`` and
      ``connection_limits`` (which cannot be given with a transport).
    - ``clock``, ``rng``, ``api``: injection points for tests.

    Several accounts in one run (``scanner.org.sources``):

    - ``accounts``: an ``Organization(role_name=..., folder=..., include=..., exclude=...)``, an
      accounts file path (``accounts.toml``), or a list of ``Account(id=..., role_arn=...)``.
    - ``accounts_in_flight`` (default 32): accounts scanned at once; ``concurrency_per_account``
      (default 16): one account's requests in flight (``concurrency.total`` bounds them all).
    - ``role_session_name``, ``role_duration``: AssumeRole's ``RoleSessionName`` and
      ``DurationSeconds``; ``sts_endpoint``, ``resourcemanager_endpoint``: base URLs (proxies,
      VPC endpoints, the simulator).

    ``role_statistics()`` then counts AssumeRole calls, refreshes and expired-token retries.
    """

    def __init__(
        self,
        *,
        credentials: CredentialsProvider | None = None,
        profile: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        endpoint_type: EndpointType | str = EndpointType.PUBLIC,
        allow_insecure_http: bool = False,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        connection_limits: ConnectionLimits | None = None,
        consistency: Consistency | None = None,
        page_size: int | None = None,
        max_passes: int | None = None,
        fail_fast: bool = False,
        home_region: str | None = None,
        buffer_pages: int = 8,
        transport: AsyncTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        api: EasApi | None = None,
        accounts: Organization | str | os.PathLike[str] | Sequence[Account] | None = None,
        accounts_in_flight: int = DEFAULT_ACCOUNTS_IN_FLIGHT,
        concurrency_per_account: int = DEFAULT_CONCURRENCY_PER_ACCOUNT,
        role_session_name: str = DEFAULT_ROLE_SESSION_NAME,
        role_duration: int = DEFAULT_DURATION_SECONDS,
        sts_endpoint: str | None = None,
        resourcemanager_endpoint: str | None = None,
    ) -> None:
        self._endpoints = EndpointResolver(
            endpoints, endpoint_type=endpoint_type, allow_insecure_http=allow_insecure_http
        )
        self._credentials = credentials
        self._profile = profile
        self._concurrency = concurrency or Concurrency()
        self._rate_limit = rate_limit or RateLimit()
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts
        if connection_limits is not None and not isinstance(connection_limits, ConnectionLimits):
            raise ConfigError(f"connection_limits must be a ConnectionLimits, got {connection_limits!r}")
        self._connection_limits = connection_limits
        if transport is not None and (timeouts is not None or connection_limits is not None):
            raise ConfigError(
                "give a transport or timeouts/connection_limits, not both (configure the transport itself)"
            )
        self._transport = transport
        self._consistency = _consistency(consistency, page_size, max_passes)
        self._fail_fast = fail_fast
        overridden = self._endpoints.overridden_regions
        self._home_region = validate_region(
            home_region or (overridden[0] if overridden else DEFAULT_HOME_REGION)
        )
        require_positive("buffer_pages", buffer_pages, integer=True)
        self._buffer_pages = buffer_pages
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._api = api
        self._accounts: Organization | tuple[Account, ...] | None = (
            resolve_accounts(accounts) if accounts is not None else None
        )
        if self._accounts is not None and api is not None:
            raise ConfigError("give accounts or api, not both (each account gets its own client)")
        require_positive("accounts_in_flight", accounts_in_flight, integer=True)
        require_positive("concurrency_per_account", concurrency_per_account, integer=True)
        self._accounts_in_flight = accounts_in_flight
        self._concurrency_per_account = concurrency_per_account
        self._role_session_name = role_session_name
        self._role_duration = role_duration
        self._allow_insecure_http = allow_insecure_http
        self._rpc_endpoints = (sts_endpoint, resourcemanager_endpoint)
        self._org: OrgSession | None = None
        self._lifecycle = Lifecycle("Scanner")
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self._rate_limiters: ClientRateLimiters | None = None
        self._streams: list[ScanStream] = []

    def _build_client(self) -> EasClient:
        credentials = (
            self._credentials if self._credentials is not None else DefaultCredentials(self._profile)
        )
        if self._transport is not None:
            return EasClient(
                credentials=credentials,
                endpoints=self._endpoints,
                transport=self._transport,
                clock=self._clock,
            )
        return EasClient(
            credentials=credentials,
            endpoints=self._endpoints,
            timeouts=self._timeouts,
            connection_limits=(self._connection_limits or ConnectionLimits()).sized(
                total=self._concurrency.total, per_host=self._concurrency.per_region
            ),
            clock=self._clock,
        )

    def _build_org(self, transport: AsyncTransport) -> OrgSession:
        """STS, ResourceManager and every account's EAS calls over ``transport``."""
        assert self._accounts is not None
        source = self._credentials if self._credentials is not None else DefaultCredentials(self._profile)
        sts_endpoint, rm_endpoint = self._rpc_endpoints
        insecure = self._allow_insecure_http
        sts = StsClient(
            RpcClient(STS, transport, endpoint=sts_endpoint, clock=self._clock, allow_insecure_http=insecure),
            source=source,
        )
        resource_manager = None
        if isinstance(self._accounts, Organization):
            rpc = RpcClient(
                RESOURCE_MANAGER,
                transport,
                endpoint=rm_endpoint,
                clock=self._clock,
                allow_insecure_http=insecure,
            )
            resource_manager = ResourceManagerClient(rpc, source=source)
        cache = RoleCredentialsCache(
            sts,
            clock=self._clock,
            role_session_name=self._role_session_name,
            duration_seconds=self._role_duration,
            # One adaptive limiter for every AssumeRole: its quota is the calling account's.
            limiter=ClientRateLimiters(RateLimit(), self._clock).get("sts", "AssumeRole"),
            retrier=SimpleRetry(clock=self._clock, rng=self._rng),
        )
        return OrgSession(
            self._accounts,
            cache=cache,
            resource_manager=resource_manager,
            transport=transport,
            endpoints=self._endpoints,
            clock=self._clock,
        )

    async def __aenter__(self) -> Self:
        self._lifecycle.check_openable()
        stack = AsyncExitStack()
        try:
            if self._accounts is not None:
                transport = self._transport
                if transport is None:
                    total = self._concurrency.total
                    limits = (self._connection_limits or ConnectionLimits()).sized(
                        total=total, per_host=total
                    )
                    transport = AiohttpTransport(timeouts=self._timeouts, limits=limits)
                await stack.enter_async_context(transport)
                self._org = self._build_org(transport)
            elif self._api is None:
                self._api = await stack.enter_async_context(self._build_client())
            self._rate_limiters = ClientRateLimiters(self._rate_limit, self._clock)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._lifecycle.opened()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lifecycle.closed()
        assert self._stack is not None
        if self._task_group is not None:
            # Scans nobody is reading any more must not keep the block open.
            self._task_group.cancel_scope.cancel()
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            for stream in self._streams:
                stream.close_nowait()
            self._streams.clear()

    def scan(
        self,
        *,
        regions: Sequence[str] | Literal["all"] | None = None,
        services: Sequence[str] | None = None,
        service_filter: str | None = None,
        service_query: ServiceQuery | None = None,
        filters: InstanceQuery | Mapping[str, Any] | None = None,
        units: UnitFilter | None = None,
        _account: str | None = None,
        **instance_filters: Any,
    ) -> ScanStream:
        """Start a scan and return its stream of records.

        - ``regions``: region ids, or ``"all"`` (DescribeRegions); default: the regions with
          endpoint overrides if any, else all.
        - ``services``: only these service names; ``service_filter``: ListServices' fuzzy name
          filter; ``service_query``: any ListServices filter (a ``ServiceQuery``).
        - ``filters`` / keyword arguments: ListServiceInstances filters (an ``InstanceQuery``, a
          mapping, or keywords such as ``instance_status="Running"``, ``is_spot=True``).
        - ``units``: ``units(account, region) -> bool``, the (account, region) units to list of those
          found (a resume, a shard); regions are still all found, and ``events()`` names them.
        """
        if (
            not self._lifecycle.is_open
            or self._task_group is None
            or (self._api is None and self._org is None)
        ):
            raise UsageError("scan() needs an open Scanner: use it inside `async with Scanner(...) as s:`")
        assert self._rate_limiters is not None
        # ``_account`` (internal: ``scanner.distributed``'s runner) tags a single-account scan's
        # records with that AccountId at their source, as a member account's are in an
        # organisation scan: one unit of an organisation scan run elsewhere.
        if _account is not None and self._org is not None:
            raise UsageError("an organisation scan tags each account's records itself")
        plan = ScanPlan(
            regions=self._plan_regions(regions),
            services=self._plan_services(services),
            service_query=self._plan_service_query(service_filter, service_query),
            instance_query=self._plan_instance_query(filters, instance_filters),
            home_region=self._home_region,
            units=units,
        )
        send, receive = anyio.create_memory_object_stream[ScanItem](self._buffer_pages)
        job: ScanJob | AccountScan
        if self._org is not None:
            rate_limit, clock = self._rate_limit, self._clock
            job = AccountScan(
                self._org,
                plan,
                send,
                concurrency=self._concurrency,
                per_account=self._concurrency_per_account,
                accounts_in_flight=self._accounts_in_flight,
                consistency=self._consistency,
                retry_policy=self._retry,
                limiters=lambda: ClientRateLimiters(rate_limit, clock),
                clock=self._clock,
                rng=self._rng,
                fail_fast=self._fail_fast,
            )
        else:
            assert self._api is not None
            job = ScanJob(
                self._api,
                plan,
                send,
                concurrency=self._concurrency,
                consistency=self._consistency,
                retry_policy=self._retry,
                rate_limiters=self._rate_limiters,
                clock=self._clock,
                rng=self._rng,
                fail_fast=self._fail_fast,
                account=_account,
            )
        self._task_group.start_soon(job.run)
        stream = ScanStream(job, receive, self._clock)
        self._streams = [s for s in self._streams if not s.finished]
        self._streams.append(stream)
        return stream

    def role_statistics(self) -> dict[str, int]:
        """A multi-account scan's ``assume_role_calls``, ``token_refreshes`` (AssumeRole beyond
        each account's first) and ``token_retries`` (requests retried after an expired token)."""
        if self._org is None:
            return {"assume_role_calls": 0, "token_refreshes": 0, "token_retries": 0}
        return self._org.statistics()

    def _plan_regions(self, regions: Sequence[str] | str | None) -> tuple[str, ...] | None:
        if regions is None:
            return self._endpoints.overridden_regions or None
        if regions == "all":
            return None
        if isinstance(regions, str):
            raise ConfigError(f"regions must be a list of region ids or 'all', got {regions!r}")
        chosen = tuple(dict.fromkeys(validate_region(region) for region in regions))
        if not chosen:
            raise ConfigError("regions is empty: give at least one region id, or 'all'")
        return chosen

    @staticmethod
    def _plan_services(services: Sequence[str] | None) -> frozenset[str] | None:
        if services is None:
            return None
        if isinstance(services, str):
            raise ConfigError(f"services must be a list of service names, got {services!r}")
        names = frozenset(services)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ConfigError("services must be a non-empty list of non-empty service names")
        return names

    @staticmethod
    def _plan_service_query(service_filter: str | None, query: ServiceQuery | None) -> ServiceQuery:
        if query is None:
            return ServiceQuery(filter=service_filter)
        if service_filter is not None:
            raise ConfigError("give service_filter or service_query, not both")
        return query

    @staticmethod
    def _plan_instance_query(
        filters: InstanceQuery | Mapping[str, Any] | None, keywords: Mapping[str, Any]
    ) -> InstanceQuery:
        if isinstance(filters, InstanceQuery):
            if keywords:
                raise ConfigError("give filters as an InstanceQuery or as keywords, not both")
            return filters
        merged = {**(filters or {}), **keywords}
        try:
            return InstanceQuery(**merged)
        except TypeError as exc:
            known = ", ".join(InstanceQuery.__dataclass_fields__)
            raise ConfigError(f"unknown instance filter ({exc}); known filters: {known}") from None


def _consistency(
    consistency: Consistency | None, page_size: int | None, max_passes: int | None
) -> Consistency:
    if consistency is None:
        defaults = Consistency()
        return Consistency(
            page_size=defaults.page_size if page_size is None else page_size,
            max_passes=defaults.max_passes if max_passes is None else max_passes,
        )
    if not isinstance(consistency, Consistency):
        raise ConfigError(f"consistency must be a Consistency, got {consistency!r}")
    if page_size is not None or max_passes is not None:
        raise ConfigError("give consistency=Consistency(...) or page_size/max_passes, not both")
    return consistency
