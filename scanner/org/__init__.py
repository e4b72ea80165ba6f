"""Organisation-wide scans (issue 13): the wire layer.

- ``rpc``: RPC-style calls (``POST /``, parameters in the query) signed with ACS3-HMAC-SHA256,
  over the client's transport seam; the STS / ResourceManager error table.
- ``sts``: ``StsClient.assume_role`` -> temporary ``Credentials``.
- ``resourcemanager``: ``ResourceManagerClient.list_accounts`` (bounded paging).
- ``accounts``: the ``accounts.toml`` loader and ``AccountTarget``.
- ``cache``: ``RoleCredentialsCache``, per-account assumed credentials, refreshed in time.

Nothing here spawns tasks; the engine decides what runs when.
"""

from __future__ import annotations

from scanner.org.accounts import (
    AccountsFile,
    AccountSpec,
    AccountTarget,
    MemberSelection,
    load_accounts_file,
    parse_accounts,
    select_members,
)
from scanner.org.cache import (
    AccountCredentials,
    CacheStatistics,
    RoleCredentialsCache,
    SimpleRetry,
)
from scanner.org.resourcemanager import (
    SCANNABLE_STATUSES,
    AccountListing,
    DirectoryAccount,
    ResourceManagerClient,
)
from scanner.org.rpc import RESOURCE_MANAGER, STS, RpcApi, RpcClient, redactor_for, sign_rpc
from scanner.org.sts import (
    DEFAULT_ROLE_NAME,
    DEFAULT_ROLE_SESSION_NAME,
    AssumeRoleRequest,
    CallerIdentity,
    StsClient,
    role_arn,
    token_expired,
)

__all__ = [
    "DEFAULT_ROLE_NAME",
    "DEFAULT_ROLE_SESSION_NAME",
    "RESOURCE_MANAGER",
    "SCANNABLE_STATUSES",
    "STS",
    "AccountCredentials",
    "AccountListing",
    "AccountSpec",
    "AccountTarget",
    "AccountsFile",
    "AssumeRoleRequest",
    "CacheStatistics",
    "CallerIdentity",
    "DirectoryAccount",
    "MemberSelection",
    "ResourceManagerClient",
    "RoleCredentialsCache",
    "RpcApi",
    "RpcClient",
    "SimpleRetry",
    "StsClient",
    "load_accounts_file",
    "parse_accounts",
    "redactor_for",
    "role_arn",
    "select_members",
    "sign_rpc",
    "token_expired",
]
