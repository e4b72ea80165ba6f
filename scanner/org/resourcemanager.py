"""Resource Directory members: ResourceManager ``ListAccounts`` / ``ListAccountsForParent``.

Paging is by ``PageNumber`` / ``PageSize`` (at most 100). The server may answer with fewer per
page than asked (it says so in ``PageSize``): from then on we ask with its page size, so page N
covers the items the server means by it. Every loop is bounded: at most
``ceil(min(TotalCount, MAX_ACCOUNTS) / page size) + 2`` pages per pass, and a ``TotalCount``
that is not a non-negative integer up to ``MAX_ACCOUNTS`` ends the listing
(``DecodeError`` with code ``ImplausibleTotalCount``). Accounts are de-duplicated by id.

A listing that gathered fewer accounts than ``TotalCount`` (members joining or leaving while
we page, or pages that do not add up) is read again, up to ``max_passes`` times; what all
passes found is returned, with ``complete`` saying whether it reached the count.

Only members whose ``Status`` is in ``SCANNABLE_STATUSES`` are to be scanned; the others
(``PromoteVerifying``, ``PromoteFailed``, ...) are reported as skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from scanner.client.credentials import CredentialsProvider
from scanner.errors import ConfigError, DecodeError
from scanner.org.rpc import RpcClient

__all__ = [
    "MAX_ACCOUNTS",
    "MAX_PAGE_SIZE",
    "SCANNABLE_STATUSES",
    "AccountListing",
    "AccountPage",
    "DirectoryAccount",
    "ResourceManagerClient",
]

MAX_PAGE_SIZE: Final = 100
#: A TotalCount above this is implausible (the issue 11 bound for listings).
MAX_ACCOUNTS: Final = 1_000_000
SCANNABLE_STATUSES: Final = frozenset({"CreateSuccess", "InviteSuccess", "PromoteSuccess"})
#: Pages read beyond what TotalCount needs before a pass gives up.
_EXTRA_PAGES: Final = 2


@dataclass(frozen=True, slots=True)
class DirectoryAccount:
    """A member of the Resource Directory, as ``ListAccounts`` describes it."""

    account_id: str
    display_name: str = ""
    folder_id: str = ""
    status: str = ""
    type: str = ""

    @property
    def scannable(self) -> bool:
        return self.status in SCANNABLE_STATUSES


@dataclass(frozen=True, slots=True)
class AccountPage:
    accounts: tuple[DirectoryAccount, ...]
    total_count: int
    page_number: int
    page_size: int
    request_id: str


@dataclass(frozen=True, slots=True)
class AccountListing:
    """Every member found. ``complete``: the accounts found reached the last ``TotalCount``."""

    accounts: tuple[DirectoryAccount, ...]
    total_count: int
    requests: int
    passes: int
    complete: bool

    @property
    def scannable(self) -> tuple[DirectoryAccount, ...]:
        return tuple(account for account in self.accounts if account.scannable)

    @property
    def skipped(self) -> tuple[DirectoryAccount, ...]:
        return tuple(account for account in self.accounts if not account.scannable)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class ResourceManagerClient:
    """Lists the members of the caller's Resource Directory (the management account's view)."""

    def __init__(self, rpc: RpcClient, *, source: CredentialsProvider) -> None:
        self._rpc = rpc
        self._source = source

    async def list_accounts_page(
        self, page_number: int = 1, page_size: int = MAX_PAGE_SIZE, *, parent_folder_id: str | None = None
    ) -> AccountPage:
        """One page of ``ListAccounts`` (or ``ListAccountsForParent`` given a folder id)."""
        for name, value, high in (
            ("page_number", page_number, None),
            ("page_size", page_size, MAX_PAGE_SIZE),
        ):
            if type(value) is not int or value < 1 or (high is not None and value > high):
                raise ConfigError(
                    f"{name} must be an integer from 1{f' to {high}' if high else ''}, got {value!r}"
                )
        params = {"PageNumber": str(page_number), "PageSize": str(page_size)}
        action = "ListAccounts"
        if parent_folder_id is not None:
            if not isinstance(parent_folder_id, str) or not parent_folder_id.strip():
                raise ConfigError(f"the folder id must be a non-empty string, got {parent_folder_id!r}")
            params["ParentFolderId"] = parent_folder_id
            action = "ListAccountsForParent"
        credentials = await self._source.get_credentials()
        data = await self._rpc.call(action, params, credentials)
        return _decode_page(data, action, page_number, page_size)

    async def list_accounts(
        self,
        *,
        parent_folder_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        max_passes: int = 2,
    ) -> AccountListing:
        """Every member (of one folder, given ``parent_folder_id``), de-duplicated, bounded."""
        if type(max_passes) is not int or max_passes < 1:
            raise ConfigError(f"max_passes must be a positive integer, got {max_passes!r}")
        found: dict[str, DirectoryAccount] = {}
        requests = 0
        total = 0
        passes = 0
        for passes in range(1, max_passes + 1):  # noqa: B007 (reported after the loop)
            total, used = await self._one_pass(found, parent_folder_id, page_size)
            requests += used
            if len(found) >= total:
                break
        return AccountListing(
            accounts=tuple(found.values()),
            total_count=total,
            requests=requests,
            passes=passes,
            complete=len(found) >= total,
        )

    async def _one_pass(
        self, found: dict[str, DirectoryAccount], parent_folder_id: str | None, page_size: int
    ) -> tuple[int, int]:
        """Read the listing page by page into ``found``; return (last TotalCount, requests)."""
        size = page_size
        page_number = 1
        requests = 0
        budget = 1  # recomputed from each page's TotalCount and page size
        total = 0
        while requests < budget:
            page = await self.list_accounts_page(page_number, size, parent_folder_id=parent_folder_id)
            requests += 1
            total = page.total_count
            if page.page_number == 1 and page.page_size < size:
                # The server pages by fewer than we asked: page numbers count its pages from now on.
                size = page.page_size
            for account in page.accounts:
                found.setdefault(account.account_id, account)
            budget = math.ceil(total / size) + _EXTRA_PAGES
            if not page.accounts or page_number * size >= total:
                break
            page_number += 1
        return total, requests

    def __repr__(self) -> str:
        return f"ResourceManagerClient({self._rpc!r})"


def _decode_page(data: dict[str, Any], action: str, page_number: int, page_size: int) -> AccountPage:
    request_id = _text(data.get("RequestId"))

    def fail(problem: str, code: str | None = None) -> DecodeError:
        return DecodeError(
            f"unexpected {action} answer: {problem}", action=action, code=code, request_id=request_id or None
        )

    total = data.get("TotalCount")
    if type(total) is not int or not 0 <= total <= MAX_ACCOUNTS:
        raise fail(
            f"TotalCount {total!r} is not an integer from 0 to {MAX_ACCOUNTS}", code="ImplausibleTotalCount"
        )
    answered_size = data.get("PageSize", page_size)
    if type(answered_size) is not int or not 1 <= answered_size <= page_size:
        answered_size = page_size  # a server that pages by more than asked is taken at our word
    answered_number = data.get("PageNumber", page_number)
    if type(answered_number) is not int or answered_number != page_number:
        raise fail(f"asked for page {page_number}, got page {answered_number!r}")
    wrapper = data.get("Accounts")
    # The documented shape is {"Accounts": {"Account": [...]}}; accept a bare list as well.
    entries = wrapper.get("Account") if isinstance(wrapper, dict) else wrapper
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise fail("Accounts.Account is not a list")
    if len(entries) > answered_size:
        raise fail(f"{len(entries)} accounts on a page of {answered_size}")
    accounts = []
    for entry in entries:
        account_id = entry.get("AccountId") if isinstance(entry, dict) else None
        if not isinstance(account_id, str) or not account_id.isdigit():
            raise fail(f"an account entry has no numeric AccountId ({type(account_id).__name__})")
        accounts.append(
            DirectoryAccount(
                account_id=account_id,
                display_name=_text(entry.get("DisplayName")),
                folder_id=_text(entry.get("FolderId")),
                status=_text(entry.get("Status")),
                type=_text(entry.get("Type")),
            )
        )
    return AccountPage(
        accounts=tuple(accounts),
        total_count=total,
        page_number=page_number,
        page_size=answered_size,
        request_id=request_id,
    )
