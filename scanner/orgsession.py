"""``OrgSession``: the engine's ``AccountsPort`` for a real (or simulated) organisation.

- ``roster()``: an ``Organization`` is listed with ResourceManager (``ListAccounts``, or
  ``ListAccountsForParent`` for a folder) and sorted out by ``select_members``; a list of
  ``Account`` is taken as it is.
- ``open(account)``: its role is assumed through the one ``RoleCredentialsCache`` (so when the
  account starts, not up front; refreshed before its ``Expiration``), then an ``EasClient`` for
  it that borrows the scan's one transport (one connection pool, one aiohttp session, for STS,
  ResourceManager and every account's EAS calls).
- A request refused with ``InvalidSecurityToken.Expired`` is retried once with fresh credentials,
  inside the attempt: the engine sees one answer, so it counts against nothing of the account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self, TypeVar

from scanner.client.api import EasClient
from scanner.client.http import AsyncTransport, Request, Response
from scanner.clock import Clock
from scanner.eas.endpoints import EndpointResolver
from scanner.eas.models import Page, Region
from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.engine.accounts import AccountPlan, AccountRoster
from scanner.errors import ConfigError
from scanner.org.accounts import AccountTarget, select_members
from scanner.org.cache import AccountCredentials, RoleCredentialsCache
from scanner.org.resourcemanager import ResourceManagerClient
from scanner.org.sources import Account, Organization
from scanner.org.sts import token_expired

__all__ = ["AccountApi", "BorrowedTransport", "OrgSession"]

T = TypeVar("T")


class BorrowedTransport:
    """A transport used but not owned: entering and closing it do nothing (its owner does both),
    so per-account ``EasClient`` s share the scan's one session."""

    __slots__ = ("_transport",)

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def send(self, request: Request) -> Response:
        return await self._transport.send(request)


class AccountApi:
    """One account's ``EasApi``: its ``EasClient``, with one retry on an expired token."""

    __slots__ = ("_client", "_credentials", "token_retries")

    def __init__(self, client: EasClient, credentials: AccountCredentials) -> None:
        self._client = client
        self._credentials = credentials
        self.token_retries = 0

    async def _once_more_if_expired(self, call: Callable[[], Awaitable[T]]) -> T:
        held = await self._credentials.get_credentials()
        try:
            return await call()
        except Exception as exc:
            if not token_expired(exc):
                raise
            self._credentials.invalidate(held)  # False if already replaced: then just use the new ones
            self.token_retries += 1
            return await call()

    async def describe_regions(self, region: str = "cn-shanghai") -> list[Region]:
        return await self._once_more_if_expired(lambda: self._client.describe_regions(region))

    async def list_services(
        self,
        region: str,
        query: ServiceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
    ) -> Page:
        return await self._once_more_if_expired(
            lambda: self._client.list_services(region, query, page_number=page_number, page_size=page_size)
        )

    async def list_service_instances(
        self,
        region: str,
        service: str,
        query: InstanceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
    ) -> Page:
        return await self._once_more_if_expired(
            lambda: self._client.list_service_instances(
                region, service, query, page_number=page_number, page_size=page_size
            )
        )


class OrgSession:
    """Accounts and their APIs for ``scanner.engine.accounts.AccountScan`` (module docstring)."""

    def __init__(
        self,
        source: Organization | tuple[Account, ...],
        *,
        cache: RoleCredentialsCache,
        resource_manager: ResourceManagerClient | None,
        transport: AsyncTransport,
        endpoints: EndpointResolver,
        clock: Clock,
    ) -> None:
        if isinstance(source, Organization) and resource_manager is None:
            raise ConfigError("an Organization needs a ResourceManager client")
        self._source = source
        self._cache = cache
        self._rm = resource_manager
        self._transport = BorrowedTransport(transport)
        self._endpoints = endpoints
        self._clock = clock
        self._targets: dict[str, AccountTarget] = {}
        self.token_retries = 0
        #: Members ``include`` named that the directory does not have (set by ``roster``).
        self.missing: tuple[str, ...] = ()

    async def roster(self) -> AccountRoster:
        source = self._source
        if isinstance(source, Organization):
            assert self._rm is not None
            listing = await self._rm.list_accounts(parent_folder_id=source.folder)
            chosen = select_members(
                listing.accounts,
                role_name=source.role_name,
                external_id=source.external_id,
                include=source.include,
                exclude=source.exclude,
            )
            targets = chosen.targets
            skipped = tuple((a.account_id, a.status) for a in chosen.skipped)
            self.missing = chosen.missing
        else:
            targets = tuple(account.target() for account in source)
            skipped = ()
        self._targets = {target.account_id: target for target in targets}
        return AccountRoster(
            accounts=tuple(AccountPlan(t.account_id, t.name, t.regions) for t in targets),
            skipped=skipped,
        )

    @asynccontextmanager
    async def open(self, account: AccountPlan) -> AsyncIterator[AccountApi]:
        target = self._targets[account.account_id]
        await self._cache.get(target)  # assume the role now: an account that cannot fails here
        credentials = self._cache.provider(target)
        api: AccountApi | None = None
        try:
            async with EasClient(
                credentials=credentials,
                endpoints=self._endpoints,
                transport=self._transport,
                clock=self._clock,
            ) as client:
                api = AccountApi(client, credentials)
                yield api
        finally:
            if api is not None:
                self.token_retries += api.token_retries

    def statistics(self) -> dict[str, int]:
        """AssumeRole calls, refreshes and expired-token retries so far."""
        stats = self._cache.statistics()
        return {
            "assume_role_calls": stats.assume_role_calls,
            "token_refreshes": stats.refreshes,
            "token_retries": self.token_retries,
        }
