"""The floor of the HTTP stack: the same page URLs, one aiohttp session, orjson decoding, nothing else.

The simulator only answers signed requests, and the floor must not pay for signing, so every
request is signed *before* the clock starts (``scanner.eas.signing.sign``, a unique nonce each):
an untimed discovery pass lists each region's services, the simulator's counters are reset, and
the timed loop then fetches every ListServices page and every instance page (``PageSize=100``,
``Sort=StartTime&Order=asc``, the scanner's URLs) from a list of ready (url, headers) pairs,
the regions' requests taken in turn, with as many requests in flight as the scanner allows by
default (``Concurrency.total``, ``per_region`` to one region). Nothing is merged, deduplicated or
written; records are only counted. Every page is decoded with orjson, as the scanner decodes it.

The timed loop runs inside ``scanner.batch_gc()``, as the scanner's client and the CLI do: the
collector's threshold is a setting of the process, free to any client, so the floor gets it too;
without it the floor pays the young-generation collections the scanner is spared (about 12% of
its CPU here), which would flatter the scanner's ratio.

Also measured here, after the timed loop and with no I/O at all: the orjson floor, CPU per record
to decode a page and encode its records as JSON lines (``orjson_cpu_us_per_record``), on pages
kept from the run; a job with ``"orjson_floor": false`` skips it (the latency scenario, which
needs only the floor's own CPU).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from benchmarks.clients.common import Measure, Request, signed_get
from scanner import batch_gc
from scanner.eas.params import service_instances_path, services_path
from scanner.engine.config import Concurrency

PAGE_SIZE = 100
KEPT_PAGES = 50


class _Signer:
    def __init__(self, job: dict[str, Any]) -> None:
        self._job = job
        self._nonce = 0
        self._now = datetime.now(UTC)

    def __call__(self, region: str, action: str, path: str, params: dict[str, str]) -> Request:
        self._nonce += 1
        return signed_get(
            self._job["endpoints"][region],
            action,
            path,
            params,
            access_key_id=self._job["access_key_id"],
            access_key_secret=self._job["access_key_secret"],
            nonce=f"floor-{time.time_ns()}-{self._nonce}",
            now=self._now,
        )


def _service_pages(region: str, sign: _Signer, total: int) -> list[Request]:
    pages = max(1, -(-total // PAGE_SIZE))
    return [
        sign(region, "ListServices", services_path(), {"PageNumber": str(p), "PageSize": str(PAGE_SIZE)})
        for p in range(1, pages + 1)
    ]


async def _discover(job: dict[str, Any], sign: _Signer) -> list[Request]:
    """Untimed: list the services, then sign every request of the timed loop.

    The plan takes one request of each region in turn, so that the workers fill every region's
    ``per_region`` connections at once rather than queueing on one region's.
    """
    plans: list[list[Request]] = []
    async with aiohttp.ClientSession() as session:
        for region in job["endpoints"]:
            plan: list[Request] = []
            plans.append(plan)
            services: list[dict[str, Any]] = []
            total = None
            page = 1
            while total is None or len(services) < total:
                url, headers = sign(
                    region,
                    "ListServices",
                    services_path(),
                    {"PageNumber": str(page), "PageSize": str(PAGE_SIZE)},
                )
                async with session.get(url, headers=headers) as response:
                    body = orjson.loads(await response.read())
                services += body["Services"]
                total = body["TotalCount"]
                page += 1
            plan += _service_pages(region, sign, len(services))
            for service in services:
                name, count = service["ServiceName"], service["TotalInstance"]
                for p in range(1, max(1, -(-count // PAGE_SIZE)) + 1):
                    params = {
                        "Order": "asc",
                        "PageNumber": str(p),
                        "PageSize": str(PAGE_SIZE),
                        "Sort": "StartTime",
                    }
                    plan.append(
                        sign(region, "ListServiceInstances", service_instances_path(region, name), params)
                    )
    return [request for turn in itertools.zip_longest(*plans) for request in turn if request is not None]


async def _fetch_all(plan: list[Request], kept: list[bytes]) -> tuple[int, int]:
    limits = Concurrency()
    records = errors = 0
    work = iter(plan)
    connector = aiohttp.TCPConnector(limit=limits.total, limit_per_host=limits.per_region)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal records, errors
        for url, headers in work:
            async with session.get(url, headers=headers) as response:
                raw = await response.read()
            if response.status != 200:
                errors += 1
                continue
            body = orjson.loads(raw)
            if "Instances" in body:
                records += len(body["Instances"])
                if len(kept) < KEPT_PAGES:
                    kept.append(raw)

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(limits.total)))
    return records, errors


def orjson_floor(pages: list[bytes], min_seconds: float = 0.5) -> float:
    """CPU µs per record to decode a page and encode its records as JSON lines, no I/O."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    records = 0
    started = time.process_time()
    while time.process_time() - started < min_seconds:
        for raw in pages:
            instances = orjson.loads(raw)["Instances"]
            b"".join([dumps(instance, option=newline) for instance in instances])
            records += len(instances)
    return (time.process_time() - started) / records * 1e6


def run(job: dict[str, Any]) -> dict[str, Any]:
    sign = _Signer(job)
    plan = asyncio.run(_discover(job, sign))
    base = next(iter(job["endpoints"].values()))
    urllib.request.urlopen(
        urllib.request.Request(f"{base}/_simulator/counters/reset", data=b"{}", method="POST")
    ).read()
    kept: list[bytes] = []
    measure = Measure()
    measure.start()
    with batch_gc():
        records, errors = asyncio.run(_fetch_all(plan, kept))
    measure.stop()
    extra = {}
    if job.get("orjson_floor", True):
        extra["orjson_cpu_us_per_record"] = round(orjson_floor(kept), 3)
    return measure.result(
        records,
        errors=errors,
        requests=len(plan),
        throttled=0,
        failed_requests=errors,
        digest=None,
        note="pre-signed requests; records counted, not checked",
        **extra,
    )
