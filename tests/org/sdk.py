"""Drive the official STS and ResourceManager SDKs (test-only dependencies) against an ``OrgServer``.

``python -m tests.org.sdk`` re-captures ``tests/org/data/sdk-org-captured.jsonl``, the golden
vectors ``test_rpc_signing.py`` re-signs byte for byte (no SDK needed to run those).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_resourcemanager20200331.client import Client as ResourceManagerSdk
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsSdk
from alibabacloud_tea_openapi.models import Config

from tests.org.server import MANAGEMENT_KEY_ID, MANAGEMENT_SECRET, OrgServer, Recorded, member, serve_org

#: Awkward on purpose: a space, a slash, non-ASCII, and the characters yarl and urlencode treat
#: differently (+ & = * ' ( ) !).
AWKWARD_EXTERNAL_ID = "ext id/é+&=*'()!~"
ROLE_ARN = "acs:ram::1234567890123456:role/EasInventoryReader"
SDK_TOKEN = "sdk-sts-token-abc"


def config(base_url: str, *, security_token: str | None = None) -> Config:
    return Config(
        access_key_id=MANAGEMENT_KEY_ID,
        access_key_secret=MANAGEMENT_SECRET,
        security_token=security_token,
        endpoint=base_url.removeprefix("http://"),
        protocol="HTTP",
        region_id="cn-hangzhou",
        read_timeout=5000,
        connect_timeout=5000,
    )


def assume_role_request(**overrides: Any) -> sts_models.AssumeRoleRequest:
    fields: dict[str, Any] = {
        "role_arn": ROLE_ARN,
        "role_session_name": "eas-fleet-scanner",
        "duration_seconds": 3600,
        "external_id": AWKWARD_EXTERNAL_ID,
    }
    fields.update(overrides)
    return sts_models.AssumeRoleRequest(**fields)


async def drive_async(base_url: str) -> Any:
    """One call of each kind with the async SDK; returns the AssumeRole response model."""
    sts = StsSdk(config(base_url))
    answer = await sts.assume_role_async(assume_role_request())
    await sts.assume_role_async(assume_role_request(external_id=None, duration_seconds=900))
    rm = ResourceManagerSdk(config(base_url, security_token=SDK_TOKEN))
    await rm.list_accounts_async(rm_models.ListAccountsRequest(page_number=2, page_size=100))
    await rm.list_accounts_for_parent_async(
        rm_models.ListAccountsForParentRequest(parent_folder_id="fd-a1b2", page_number=1, page_size=50)
    )
    return answer


def drive_sync(base_url: str) -> None:
    StsSdk(config(base_url)).assume_role(assume_role_request())
    rm = ResourceManagerSdk(config(base_url))
    rm.list_accounts(rm_models.ListAccountsRequest(page_number=1, page_size=100))


def as_json(recorded: Recorded, note: str) -> str:
    return json.dumps(
        {
            "note": note,
            "method": recorded.method,
            "raw_path": recorded.raw_path,
            "query_string": recorded.raw_query,
            "headers": recorded.headers,
            "body": recorded.body.decode(),
        },
        ensure_ascii=False,
    )


async def _capture() -> list[str]:
    server = OrgServer(accounts=[member("1234567890123456")])
    async with serve_org(server) as base_url:
        await drive_async(base_url)
        await asyncio.to_thread(drive_sync, base_url)
    notes = ["async"] * 4 + ["sync"] * 2
    return [as_json(recorded, note) for recorded, note in zip(server.requests, notes, strict=True)]


if __name__ == "__main__":
    sys.stdout.write("".join(line + "\n" for line in asyncio.run(_capture())))
