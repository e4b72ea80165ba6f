"""How many ListServiceInstances pages a second the simulator serves, and its CPU per request.

Starts ``python -m scanner.simulator`` as a subprocess, lists one region's services, then hammers
that region with properly signed ListServiceInstances requests (``scanner.eas.signing.sign``, a
fresh nonce each) from plain aiohttp clients, and reports requests/s and the server's CPU per
request (psutil on the subprocess). Not a test; run it by hand::

    python benchmarks/simulator_throughput.py                       # cached and uncached
    python benchmarks/simulator_throughput.py --mode cached --duration 20 --clients 2

``cached``: the same few hundred pages over and over (served from the page cache).
``uncached``: the simulator runs with ``--page-cache-mb 0``, so every page is rendered.

On a small machine the client can be the bottleneck; the server's CPU per request is the figure
that does not depend on the client (its capacity on one core is 1e6 / µs-per-request).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import psutil
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.eas.params import API_VERSION, service_instances_path, services_path  # noqa: E402
from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, format_date, sign  # noqa: E402


@dataclass(frozen=True)
class Target:
    base_url: str
    host: str
    key_id: str
    secret: str


def signed(
    target: Target, action: str, path: str, params: dict[str, str], nonce: str
) -> tuple[URL, dict[str, str]]:
    headers = {
        "host": target.host,
        "x-acs-action": action,
        "x-acs-version": API_VERSION,
        "x-acs-date": format_date(datetime.now(UTC)),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
        "accept": "application/json",
    }
    headers["Authorization"] = sign(
        method="GET",
        canonical_uri=path,
        params=params,
        headers=headers,
        access_key_id=target.key_id,
        access_key_secret=target.secret,
    )
    query = canonical_query(params)
    return URL(
        f"{target.base_url}{path}?{query}" if query else f"{target.base_url}{path}", encoded=True
    ), headers


async def list_services(target: Target, region: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    async with aiohttp.ClientSession() as session:
        for page in itertools.count(1):
            params = {"PageNumber": str(page), "PageSize": "100"}
            url, headers = signed(
                target, "ListServices", services_path(), params, f"svc-{page}-{time.time_ns()}"
            )
            async with session.get(url, headers=headers) as response:
                body = orjson.loads(await response.read())
            out += [(s["ServiceName"], s["TotalInstance"]) for s in body["Services"]]
            if page * 100 >= body["TotalCount"]:
                break
    return out


def page_plan(services: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """(service, page) pairs of full 100-instance pages, biggest services first."""
    plan = [
        (name, page)
        for name, total in sorted(services, key=lambda s: -s[1])
        for page in range(1, total // 100 + 1)
    ]
    return plan[:limit] if limit else plan


async def hammer(
    target: Target, region: str, plan: list[tuple[str, int]], concurrency: int, duration: float, tag: str
) -> tuple[int, int]:
    """Send requests for ``duration`` seconds; return (ok, errors)."""
    ok = errors = 0
    counter = itertools.count()
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline:
            n = next(counter)
            name, page = plan[n % len(plan)]
            params = {"PageNumber": str(page), "PageSize": "100", "Sort": "StartTime", "Order": "asc"}
            url, headers = signed(
                target, "ListServiceInstances", service_instances_path(region, name), params, f"{tag}-{n}"
            )
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    ok += 1
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ok, errors


def client_process(
    args: tuple[Target, str, list[tuple[str, int]], int, float, str],
) -> tuple[int, int, float]:
    started = time.process_time()
    ok, errors = asyncio.run(hammer(*args))
    return ok, errors, time.process_time() - started


def run(mode: str, options: argparse.Namespace) -> None:
    command = [
        sys.executable,
        "-m",
        "scanner.simulator",
        "--preset",
        options.preset,
        "--seed",
        "1",
        "--port",
        "0",
    ]
    if mode == "uncached":
        command += ["--page-cache-mb", "0"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert server.stdout is not None
        info = orjson.loads(server.stdout.readline())
        region = sorted(info["endpoints"])[0]
        base_url = info["endpoints"][region]
        target = Target(
            base_url, base_url.removeprefix("http://"), info["access_key_id"], info["access_key_secret"]
        )
        services = asyncio.run(list_services(target, region))
        plan = page_plan(services, options.pages if mode == "cached" else None)
        proc = psutil.Process(server.pid)
        # Warm up: fills the cache in cached mode, and lets both sides settle.
        client_process((target, region, plan, options.concurrency, 1.0, f"warm-{mode}"))
        before = proc.cpu_times()
        started = time.perf_counter()
        jobs = [
            (target, region, plan, options.concurrency, options.duration, f"{mode}-{i}")
            for i in range(options.clients)
        ]
        if options.clients == 1:
            results = [client_process(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(options.clients) as pool:
                results = pool.map(client_process, jobs)
        elapsed = time.perf_counter() - started
        after = proc.cpu_times()
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        client_cpu = sum(r[2] for r in results)
        server_cpu = (after.user - before.user) + (after.system - before.system)
        total = ok + errors
        print(
            f"{mode:9s} preset={options.preset} pages={len(plan)} "
            f"concurrency={options.concurrency}x{options.clients}: "
            f"{total / elapsed:6.0f} requests/s ({errors} errors), "
            f"server CPU {server_cpu / total * 1e6:5.0f} µs/request "
            f"({server_cpu / elapsed:4.0%} of a core; "
            f"one-core capacity ~{total / server_cpu:5.0f} requests/s), "
            f"client CPU {client_cpu / total * 1e6:5.0f} µs/request"
        )
    finally:
        server.send_signal(2)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("cached", "uncached", "both"), default="both")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--pages", type=int, default=300, help="distinct pages in cached mode")
    options = parser.parse_args()
    for mode in ("cached", "uncached") if options.mode == "both" else (options.mode,):
        run(mode, options)


if __name__ == "__main__":
    main()
