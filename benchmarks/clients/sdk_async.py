"""The SDK's async client as a careful user would drive it.

Each region's services are listed page by page; then every service is listed under a semaphore of
50, its pages walked in order (``Sort=StartTime&Order=asc``) until ``TotalCount`` records are in,
and its records written as JSON lines (orjson, so the writer is not what is measured). No retry is
configured, which is the SDK's default: a failed call is counted in ``errors`` and that service (or
region) is left incomplete, the way a user who catches and logs errors would see it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, BinaryIO

import orjson
from alibabacloud_eas20210701 import models

from benchmarks.clients.common import Measure, output_digest
from benchmarks.clients.sdk import PAGE_SIZE, Calls, clients, record_of, service_summary

CONCURRENCY = 50


class _Run:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.errors = 0
        self.records = 0
        self.calls = Calls()

    async def services(self, client: Any) -> list[Any]:
        found: list[Any] = []
        page = 1
        while True:
            request = models.ListServicesRequest(page_number=page, page_size=PAGE_SIZE)
            body = (await self.calls.wait(client.list_services_async(request))).body
            found += body.services or []
            if not body.services or len(found) >= body.total_count:
                return found
            page += 1

    async def service(self, client: Any, region: str, service: Any, gate: asyncio.Semaphore) -> None:
        name = service.service_name
        summary = service_summary(service)
        async with gate:
            page, seen = 1, 0
            try:
                while True:
                    request = models.ListServiceInstancesRequest(
                        page_number=page, page_size=PAGE_SIZE, sort="StartTime", order="asc"
                    )
                    body = (
                        await self.calls.wait(client.list_service_instances_async(region, name, request))
                    ).body
                    instances = body.instances or []
                    self.out.write(
                        b"".join(
                            orjson.dumps(
                                record_of(i, region, name, summary), option=orjson.OPT_APPEND_NEWLINE
                            )
                            for i in instances
                        )
                    )
                    seen += len(instances)
                    self.records += len(instances)
                    if not instances or seen >= body.total_count:
                        return
                    page += 1
            except Exception:
                self.errors += 1

    async def region(self, client: Any, region: str, gate: asyncio.Semaphore) -> None:
        try:
            services = await self.services(client)
        except Exception:
            self.errors += 1
            return
        await asyncio.gather(*(self.service(client, region, s, gate) for s in services))


async def _scan(job: dict[str, Any], out: BinaryIO) -> _Run:
    run = _Run(out)
    gate = asyncio.Semaphore(CONCURRENCY)
    await asyncio.gather(*(run.region(client, region, gate) for region, client in clients(job).items()))
    return run


def run(job: dict[str, Any]) -> dict[str, Any]:
    measure = Measure()
    measure.start()
    with open(job["output"], "wb") as out:
        result = asyncio.run(_scan(job, out))
    measure.stop()
    lines, digest = output_digest(job["output"])
    os.unlink(job["output"])
    return measure.result(lines, errors=result.errors, digest=digest, **result.calls.to_dict())
