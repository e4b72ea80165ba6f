"""ResourceManager ListAccounts / ListAccountsForParent over loopback: paging, bounds, statuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scanner.client.credentials import StaticCredentials
from scanner.client.http import Request, Response
from scanner.errors import ConfigError, DecodeError
from scanner.org.accounts import select_members
from scanner.org.resourcemanager import SCANNABLE_STATUSES, ResourceManagerClient
from scanner.org.rpc import RESOURCE_MANAGER, RpcClient
from scanner.testing import MockTransport
from tests.org.conftest import Org
from tests.org.server import member

STATUSES = ["CreateSuccess", "InviteSuccess", "PromoteSuccess", "PromoteVerifying", "PromoteFailed",
            "PromoteExpired", "PromoteCancelled"]  # fmt: skip


def members(count: int, folder: str = "fd-root") -> list[dict[str, Any]]:
    return [member(f"{1000000000000000 + i}", folder=folder) for i in range(count)]


def pages_asked(org: Org) -> list[str]:
    return [r.raw_query for r in org.server.requests]


@pytest.mark.asyncio
async def test_every_member_in_pages_of_100(org: Org) -> None:
    org.server.accounts = members(250)
    listing = await org.rm.list_accounts()
    assert [a.account_id for a in listing.accounts] == [m["AccountId"] for m in org.server.accounts]
    assert (listing.total_count, listing.requests, listing.passes, listing.complete) == (250, 3, 1, True)
    assert pages_asked(org) == [f"PageNumber={n}&PageSize=100" for n in (1, 2, 3)]
    first = listing.accounts[0]
    assert (first.display_name, first.folder_id, first.status, first.type) == (
        "member-0000", "fd-root", "CreateSuccess", "ResourceAccount",
    )  # fmt: skip


@pytest.mark.asyncio
async def test_a_server_that_pages_by_fewer_is_followed_at_its_page_size(org: Org) -> None:
    org.server.accounts = members(100)
    org.server.page_size_cap = 30
    listing = await org.rm.list_accounts()
    assert len(listing.accounts) == 100
    assert listing.complete
    assert pages_asked(org) == ["PageNumber=1&PageSize=100"] + [
        f"PageNumber={n}&PageSize=30" for n in (2, 3, 4)
    ]


@pytest.mark.asyncio
async def test_a_folder(org: Org) -> None:
    org.server.accounts = members(3, "fd-a") + members(2, "fd-b")
    listing = await org.rm.list_accounts(parent_folder_id="fd-b")
    assert len(listing.accounts) == 2
    assert {a.folder_id for a in listing.accounts} == {"fd-b"}
    assert org.server.requests[0].action == "ListAccountsForParent"
    assert "ParentFolderId=fd-b" in org.server.requests[0].raw_query


@pytest.mark.asyncio
async def test_scannable_and_skipped(org: Org) -> None:
    org.server.accounts = [member(f"{2000000000000000 + i}", status=s) for i, s in enumerate(STATUSES)]
    listing = await org.rm.list_accounts()
    assert {a.status for a in listing.scannable} == SCANNABLE_STATUSES
    assert [a.status for a in listing.skipped] == STATUSES[3:]
    selection = select_members(listing.accounts, role_name="EasInventoryReader")
    targets = selection.targets
    assert [t.account_id for t in targets] == [a.account_id for a in listing.scannable]
    assert targets[0].role_arn == "acs:ram::2000000000000000:role/EasInventoryReader"
    assert targets[0].name == "member-0000"
    assert selection.skipped == listing.skipped
    assert (selection.excluded, selection.missing) == ((), ())


@pytest.mark.asyncio
async def test_an_empty_directory(org: Org) -> None:
    listing = await org.rm.list_accounts()
    assert (listing.accounts, listing.total_count, listing.requests, listing.complete) == ((), 0, 1, True)


@pytest.mark.asyncio
async def test_a_total_count_the_pages_do_not_back_is_bounded_and_reported_incomplete(org: Org) -> None:
    org.server.accounts = members(150)
    org.server.total_count = 900_000  # plausible, but a lie: page 3 is empty
    listing = await org.rm.list_accounts(max_passes=2)
    assert len(listing.accounts) == 150
    assert not listing.complete
    assert listing.passes == 2
    # Each pass stops at the first empty page: 3 requests, not 9,000.
    assert listing.requests == 6


@pytest.mark.parametrize("total", [-1, "12", 1.5, 1_000_001, True])
@pytest.mark.asyncio
async def test_an_implausible_total_count_ends_the_listing(org: Org, total: object) -> None:
    org.server.accounts = members(3)
    org.server.total_count = total
    with pytest.raises(DecodeError) as caught:
        await org.rm.list_accounts()
    assert caught.value.code == "ImplausibleTotalCount"
    assert caught.value.kind == "ImplausibleTotalCount"
    assert len(org.server.requests) == 1


class Scripted(MockTransport):
    """Answers each POST with the next scripted page body."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        super().__init__(self.answer)
        self.bodies = list(bodies)
        self.queries: list[str] = []

    def answer(self, request: Request) -> Response:
        assert request.method == "POST"
        self.queries.append(request.url.partition("?")[2])
        body = self.bodies.pop(0) if self.bodies else {"TotalCount": 0, "PageNumber": 1, "PageSize": 100}
        return Response(200, {"Content-Type": "application/json"}, orjson.dumps(body))


def page(number: int, ids: list[str], total: int, size: int = 100, **extra: Any) -> dict[str, Any]:
    return {"RequestId": f"r{number}", "TotalCount": total, "PageNumber": number, "PageSize": size,
            "Accounts": {"Account": [member(i) for i in ids]}, **extra}  # fmt: skip


def client(http: Scripted) -> ResourceManagerClient:
    return ResourceManagerClient(
        RpcClient(RESOURCE_MANAGER, http, endpoint="https://resourcemanager.aliyuncs.com"),
        source=StaticCredentials("LTAI5tManagementKey01", "secret-secret"),
    )


@pytest.mark.asyncio
async def test_duplicates_across_pages_are_kept_once_and_a_second_pass_finds_the_rest() -> None:
    # A member joined while we paged: page 2 repeats an id and one member is never seen.
    http = Scripted(
        page(1, ["11", "12"], 4, size=2),
        page(2, ["12", "13"], 4, size=2),
        page(1, ["11", "12"], 4, size=2),
        page(2, ["13", "14"], 4, size=2),
    )
    listing = await client(http).list_accounts(page_size=2)
    assert [a.account_id for a in listing.accounts] == ["11", "12", "13", "14"]
    assert (listing.passes, listing.requests, listing.complete) == (2, 4, True)


@pytest.mark.asyncio
async def test_the_flat_accounts_shape_and_missing_fields_are_accepted() -> None:
    http = Scripted({"TotalCount": 1, "PageNumber": 1, "PageSize": 100, "Accounts": [{"AccountId": "42"}]})
    listing = await client(http).list_accounts()
    assert listing.accounts[0].account_id == "42"
    assert listing.accounts[0].status == ""
    assert not listing.accounts[0].scannable


@pytest.mark.parametrize(
    "body",
    [
        {"PageNumber": 1, "PageSize": 100, "Accounts": {"Account": []}},
        {"TotalCount": 1, "PageNumber": 1, "PageSize": 100, "Accounts": {"Account": "x"}},
        {"TotalCount": 1, "PageNumber": 1, "PageSize": 100, "Accounts": {"Account": [{"AccountId": 42}]}},
        {"TotalCount": 1, "PageNumber": 2, "PageSize": 100, "Accounts": {"Account": []}},
        {
            "TotalCount": 3,
            "PageNumber": 1,
            "PageSize": 1,
            "Accounts": {"Account": [member("1"), member("2")]},
        },
    ],
)
@pytest.mark.asyncio
async def test_malformed_pages(body: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        await client(Scripted(body)).list_accounts()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"page_size": 101}, "page_size"), ({"page_size": 0}, "page_size"), ({"page_number": 0}, "page_number"),
     ({"parent_folder_id": " "}, "folder")],
)  # fmt: skip
@pytest.mark.asyncio
async def test_page_arguments_are_checked_before_sending(kwargs: dict[str, Any], fragment: str) -> None:
    http = Scripted()
    with pytest.raises(ConfigError, match=fragment):
        await client(http).list_accounts_page(**kwargs)
    assert http.queries == []
