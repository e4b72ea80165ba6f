"""The scanner through its public library API: ``Scanner(...).scan().write_to(file)``.

The scan runs inside ``scanner.batch_gc()``, as the CLI runs it: the process is a batch scan.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import anyio

from benchmarks.clients.common import Measure, output_digest, summary_counts
from scanner import Scanner, StaticCredentials, batch_gc


async def _scan(job: dict[str, Any], out: BinaryIO, measure: Measure) -> dict[str, Any]:
    async with Scanner(
        credentials=StaticCredentials(job["access_key_id"], job["access_key_secret"]),
        endpoints=job["endpoints"],
        allow_insecure_http=True,
    ) as scanner:
        summary = await scanner.scan().write_to(out)
    return summary_counts(summary)


def run(job: dict[str, Any]) -> dict[str, Any]:
    measure = Measure()
    measure.start()
    # A plain file, written synchronously a page at a time, as the CLI's sink does.
    with open(job["output"], "wb") as out, batch_gc():
        summary = anyio.run(_scan, job, out, measure)
    measure.stop()
    lines, digest = output_digest(job["output"])
    os.unlink(job["output"])
    return measure.result(
        lines,
        errors=summary["failures"],
        digest=digest,
        summary=summary,
        requests=summary["requests"],
        throttled=summary["throttled"],
        failed_requests=summary["retries"] - summary["throttled"],
    )
