"""The scanner over an organisation: ``Scanner(accounts=Organization(...)).scan().write_to(file)``.

Its digest is per account (``{AccountId: {"count", "digest"}}``, keys only), to hold against the
simulator's ``/_simulator/org/digests``; it also reports its AssumeRole calls and refreshes.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, BinaryIO

import anyio
import orjson

from benchmarks.clients.common import Measure, summary_counts
from scanner import Organization, Scanner, StaticCredentials, batch_gc
from scanner.simulator.digest import account_key_digests


async def _scan(job: dict[str, Any], out: BinaryIO) -> dict[str, Any]:
    async with Scanner(
        credentials=StaticCredentials(job["access_key_id"], job["access_key_secret"]),
        endpoints=job["endpoints"],
        allow_insecure_http=True,
        accounts=Organization(),
        sts_endpoint=job["sts_endpoint"],
        resourcemanager_endpoint=job["resourcemanager_endpoint"],
        accounts_in_flight=job.get("accounts_in_flight", 32),
    ) as scanner:
        summary = await scanner.scan().write_to(out)
        roles = scanner.role_statistics()
    return {
        **summary_counts(summary),
        "failure_codes": dict(Counter(failure.code for failure in summary.failures)),
        **roles,
    }


def _digests(path: str) -> tuple[int, dict[str, Any]]:
    keys = []
    with open(path, "rb") as lines:
        for line in lines:
            r = orjson.loads(line)
            keys.append((r["AccountId"], r["ClusterId"], r["ServiceName"], r["InstanceName"]))
    return len(keys), {a: d.to_dict() for a, d in account_key_digests(keys).items()}


def run(job: dict[str, Any]) -> dict[str, Any]:
    measure = Measure()
    measure.start()
    with open(job["output"], "wb") as out, batch_gc():
        summary = anyio.run(_scan, job, out)
    measure.stop()
    lines, digests = _digests(job["output"])
    os.unlink(job["output"])
    return measure.result(
        lines,
        errors=summary["failures"],
        digest=digests,
        summary={**summary, "digest_by_account": digests},
        requests=summary["requests"],
        throttled=summary["throttled"],
        failed_requests=summary["retries"] - summary["throttled"],
    )
