"""The SDK's sync client walking everything in order: regions, service pages, instance pages."""

from __future__ import annotations

import os
from typing import Any

import orjson
from alibabacloud_eas20210701 import models

from benchmarks.clients.common import Measure, output_digest
from benchmarks.clients.sdk import PAGE_SIZE, Calls, clients, record_of, service_summary


def _scan(job: dict[str, Any], out: Any, calls: Calls) -> int:
    errors = 0
    for region, client in clients(job).items():
        services: list[Any] = []
        page = 1
        try:
            while True:
                request = models.ListServicesRequest(page_number=page, page_size=PAGE_SIZE)
                body = calls.call(client.list_services, request).body
                services += body.services or []
                if not body.services or len(services) >= body.total_count:
                    break
                page += 1
        except Exception:
            errors += 1
            continue
        for service in services:
            name, summary = service.service_name, service_summary(service)
            page, seen = 1, 0
            try:
                while True:
                    request = models.ListServiceInstancesRequest(
                        page_number=page, page_size=PAGE_SIZE, sort="StartTime", order="asc"
                    )
                    body = calls.call(client.list_service_instances, region, name, request).body
                    instances = body.instances or []
                    for instance in instances:
                        record = record_of(instance, region, name, summary)
                        out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
                    seen += len(instances)
                    if not instances or seen >= body.total_count:
                        break
                    page += 1
            except Exception:
                errors += 1
    return errors


def run(job: dict[str, Any]) -> dict[str, Any]:
    measure = Measure()
    measure.start()
    with open(job["output"], "wb") as out:
        calls = Calls()
        errors = _scan(job, out, calls)
    measure.stop()
    lines, digest = output_digest(job["output"])
    os.unlink(job["output"])
    return measure.result(lines, errors=errors, digest=digest, **calls.to_dict())
