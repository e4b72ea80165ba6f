"""``eas-scan`` itself, in this process: ``scanner.cli.main(argv)``, measured like the other clients.

The job gives ``argv`` and, for a scan, what to read back for the digest: ``output`` (a JSON Lines or
Parquet file, by its suffix) or ``output_dir`` (a scan directory). The digest is computed after the
measure stops, so reading the output back counts in neither the CPU nor the peak RSS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.clients.common import Measure
from scanner.simulator.digest import DigestBuilder, content_hash

_TAGS = ("ClusterId", "ServiceName", "Service")


def _records(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from scanner.scandir import ScanDirectory
    from scanner.scandir.formats import iter_records

    if job.get("output_dir"):
        root = Path(job["output_dir"])
        for entry in ScanDirectory.open(root).entries().values():
            if entry.file is not None:
                yield from iter_records(root / entry.file, entry.format)
    elif job.get("output"):
        path = Path(job["output"])
        yield from iter_records(path, "parquet" if path.suffix == ".parquet" else "jsonl")


def digest_of(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(records, content digest) of what the scan wrote, comparable with the simulator's truth."""
    builder = DigestBuilder()
    for record in _records(job):
        cluster_id, service_name = record["ClusterId"], record["ServiceName"]
        for tag in _TAGS:
            record.pop(tag, None)
        builder.add_hash(content_hash(cluster_id, service_name, record))
    return builder.count, builder.result().to_dict()


def run(job: dict[str, Any]) -> dict[str, Any]:
    from scanner import cli

    if "access_key_id" in job:
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"] = job["access_key_id"]
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = job["access_key_secret"]
    measure = Measure()
    measure.start()
    code = cli.main(list(job["argv"]))
    measure.stop()
    records, digest = digest_of(job)
    return measure.result(records, digest=digest, exit_code=code, requests=0, throttled=0)
