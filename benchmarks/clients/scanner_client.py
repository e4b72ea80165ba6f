"""The scanner through its public library API: ``Scanner(...).scan().write_to(file)``.

What is timed is what a CLI user pays for, no more: the scan runs inside ``scanner.batch_gc()``
and writes through a 1 MiB buffer, as the CLI does (``scanner.output.files.OutputFile``); the
output's digest, for the truth check, is computed after the clock stops.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import anyio

from benchmarks.clients.common import Measure, output_digest, summary_counts
from scanner import Scanner, StaticCredentials, batch_gc

#: The buffer of the CLI's output file (``OutputFile``: ``fs.fdopen(fd, 1 << 20)``).
OUTPUT_BUFFER_BYTES = 1 << 20


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
    # A plain file, written synchronously a page at a time through the CLI's buffer size.
    with open(job["output"], "wb", buffering=OUTPUT_BUFFER_BYTES) as out, batch_gc():
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
