"""ResourceManager (2020-03-31) as the simulator serves it: ``ListAccounts``, ``ListAccountsForParent``.

- Only the management account may list (anyone else: 404 ``EntityNotExists.ResourceDirectory``,
  "the account did not enable a resource directory", as the API answers an account that is not
  the directory's management account).
- ``PageNumber`` (from 1, default 1) and ``PageSize`` (1 to 100, default 10): anything else is 400
  ``InvalidParameter.PageNumber`` / ``InvalidParameter.PageSize``. The page holds at most
  ``OrgSpec.accounts_page_cap`` accounts, and ``PageSize`` in the answer is the size used.
  A page past the end is empty, with the true ``TotalCount``.
- ``Tag.N.Key`` / ``Tag.N.Value``: only accounts with every such tag; ``IncludeTags=true`` adds
  ``Tags.Tag[]``. ``ListAccountsForParent`` needs ``ParentFolderId`` (the root ``r-xxxxxx`` or a
  folder ``fd-xxxxxxxxxx``; 400 ``InvalidParameter.FolderId`` if malformed, 404
  ``EntityNotExists.Folder`` if unknown) and lists only the accounts directly in it, filtered by
  ``QueryKeyword`` (a substring of the DisplayName or the AccountId).
- ``OrgSpec.list_accounts_rate``: above it, 400 ``Throttling.User`` (the API's quota is 20 to 50/s).
- ``OrgSpec.list_management``: the management account is listed too (first: it joined first).
- Order: by JoinTime, oldest first. The response wraps the list twice, as the API does:
  ``{"Accounts": {"Account": [...]}, "PageNumber", "PageSize", "TotalCount"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from scanner.simulator.derive import iso
from scanner.simulator.org import Member, Organization
from scanner.simulator.rpc import RpcError, RpcProduct, RpcRequest

__all__ = ["RESOURCEMANAGER_VERSION", "resourcemanager_product"]

RESOURCEMANAGER_VERSION: Final = "2020-03-31"
_FOLDER_ID: Final = re.compile(r"r-[A-Za-z0-9]{6}|fd-[A-Za-z0-9]{10}")
_TAG_KEY: Final = re.compile(r"Tag\.(\d+)\.(Key|Value)")


def resourcemanager_product(org: Organization) -> RpcProduct:
    def list_accounts(request: RpcRequest) -> dict[str, Any]:
        return _list(org, request, parent=False)

    def list_accounts_for_parent(request: RpcRequest) -> dict[str, Any]:
        return _list(org, request, parent=True)

    return RpcProduct(
        name="ResourceManager",
        version=RESOURCEMANAGER_VERSION,
        host="resourcemanager.aliyuncs.com",
        actions={"ListAccounts": list_accounts, "ListAccountsForParent": list_accounts_for_parent},
    )


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise RpcError(
            400, f"InvalidParameter.{name}", f"The parameter {name} must be {low} to {high}, got {raw!r}."
        )
    return value


def _tags(params: Mapping[str, str]) -> dict[str, str | None]:
    """``Tag.N.Key`` / ``Tag.N.Value`` pairs: key -> value (None: any value)."""
    by_n: dict[int, dict[str, str]] = {}
    for name, value in params.items():
        match = _TAG_KEY.fullmatch(name)
        if match is not None:
            by_n.setdefault(int(match.group(1)), {})[match.group(2)] = value
    wanted: dict[str, str | None] = {}
    for pair in by_n.values():
        if "Key" not in pair:
            raise RpcError(400, "InvalidParameter.Tag", "Every Tag.N.Value needs its Tag.N.Key.")
        wanted[pair["Key"]] = pair.get("Value") or None
    return wanted


def _list(org: Organization, request: RpcRequest, *, parent: bool) -> dict[str, Any]:
    if org.issued.get(request.access_key_id) is not None:
        raise RpcError(
            404,
            "EntityNotExists.ResourceDirectory",
            "The resource directory for the account is not enabled.",
        )
    if org.list_accounts_wait():
        raise RpcError(400, "Throttling.User", "Request was denied due to user flow control.")
    params = request.params
    page_number = _int_param(params, "PageNumber", 1, 1, 1_000_000)
    page_size = _int_param(params, "PageSize", 10, 1, 100)
    include_tags = params.get("IncludeTags", "").lower() == "true"
    wanted = _tags(params)
    members: list[Member] = list(org.members)
    if org.spec.list_management:
        members.insert(0, org.management_member)
    if parent:
        folder = params.get("ParentFolderId")
        if not folder:
            raise RpcError(400, "MissingParameter.ParentFolderId", "You must specify ParentFolderId.")
        if _FOLDER_ID.fullmatch(folder) is None:
            raise RpcError(400, "InvalidParameter.FolderId", "The FolderId is invalid.")
        if folder not in org.folder_ids:
            raise RpcError(404, "EntityNotExists.Folder", "The resource directory folder does not exist.")
        members = [m for m in members if m.folder_id == folder]
        keyword = (params.get("QueryKeyword") or "").lower()
        if keyword:
            members = [m for m in members if keyword in m.display_name.lower() or keyword in m.account_id]
    if wanted:
        members = [m for m in members if _has_tags(m, wanted)]
    size = min(page_size, org.spec.accounts_page_cap)
    start = (page_number - 1) * size
    page = members[start : start + size]
    return {
        "Accounts": {"Account": [_account(org, m, include_tags, with_path=not parent) for m in page]},
        "PageNumber": page_number,
        "PageSize": size,
        "TotalCount": len(members),
    }


def _has_tags(member: Member, wanted: Mapping[str, str | None]) -> bool:
    tags = dict(member.tags)
    return all(key in tags and (value is None or tags[key] == value) for key, value in wanted.items())


def _account(org: Organization, member: Member, include_tags: bool, *, with_path: bool) -> dict[str, Any]:
    joined = iso(member.join_epoch)
    account: dict[str, Any] = {
        "AccountId": member.account_id,
        "DisplayName": member.display_name,
        "FolderId": member.folder_id,
        "JoinMethod": member.join_method,
        "JoinTime": joined,
        "ModifyTime": joined,
        "ResourceDirectoryId": org.resource_directory_id,
        "Status": member.status,
        "Type": member.account_type,
    }
    if with_path:
        folders = [org.root_folder_id]
        if member.folder_id != org.root_folder_id:
            folders.append(member.folder_id)
        account["ResourceDirectoryPath"] = "/".join([org.resource_directory_id, *folders, member.account_id])
    if include_tags:
        account["Tags"] = {"Tag": [{"Key": key, "Value": value} for key, value in member.tags]}
    return account
