"""``eas-scan simulate --preset org-small`` as a subprocess: the JSON line of an organisation."""

from __future__ import annotations

import json
import signal
import urllib.request
from typing import Any

from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_resourcemanager20200331.client import Client as RmClient
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.models import Config

from tests.simulator.test_standalone import EAS_SCAN_SIMULATE, start


def config(info: dict[str, Any], endpoint: str) -> Config:
    return Config(
        access_key_id=info["access_key_id"],
        access_key_secret=info["access_key_secret"],
        endpoint=endpoint.removeprefix("http://"),
        protocol="HTTP",
    )


def test_eas_scan_simulate_org_small_prints_the_organisation() -> None:
    process, info = start(
        "--preset", "org-small", "--seed", "4", "--token-ttl", "60", command=EAS_SCAN_SIMULATE
    )
    try:
        assert set(info) >= {
            "endpoints", "access_key_id", "access_key_secret", "instances", "sts_endpoint",
            "resourcemanager_endpoint", "accounts", "management_account_id", "role_name", "external_id",
        }  # fmt: skip
        assert len(info["endpoints"]) == 3
        assert info["instances"] == 3_000 == sum(a["instances"] for a in info["accounts"])
        assert len(info["accounts"]) == 12
        assert {"id", "name", "folder", "status", "instances"} <= set(info["accounts"][0])
        identity = StsClient(config(info, info["sts_endpoint"])).get_caller_identity().body
        assert identity.account_id == info["management_account_id"]
        listed = RmClient(config(info, info["resourcemanager_endpoint"])).list_accounts(
            rm_models.ListAccountsRequest(page_size=100)
        )
        assert [a.account_id for a in listed.body.accounts.account] == [a["id"] for a in info["accounts"]]
        member = next(a for a in info["accounts"] if a["status"] == "CreateSuccess")
        arn = f"acs:ram::{member['id']}:role/{info['role_name']}"
        assumed = StsClient(config(info, info["sts_endpoint"])).assume_role(
            sts_models.AssumeRoleRequest(role_arn=arn, role_session_name="standalone")
        )
        assert assumed.body.credentials.access_key_id.startswith("STS.")
        url = next(iter(info["endpoints"].values())) + f"/_simulator/fleet-digest?account={member['id']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.loads(response.read())["count"] == member["instances"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
