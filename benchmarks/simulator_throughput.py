"""How many ListServiceInstances pages a second the simulator serves, and its CPU per request.

Starts ``python -m scanner.simulator`` as a subprocess, lists one region's services, then hammers
that region with properly signed ListServiceInstances requests (``scanner.eas.signing.sign``, a
fresh nonce each) from plain aiohttp clients, and reports requests/s and the server's CPU per
request (psutil on the subprocess). Not a test; run it by hand::

    python benchmarks/simulator_throughput.py                       # verify, cached and uncached
    python benchmarks/simulator_throughput.py --mode cached --duration 20 --clients 2

``cached``: the same few hundred pages over and over (served from the page cache).
``uncached``: the simulator runs with ``--page-cache-mb 0``, so every page is rendered.
``verify``: the signature check alone, in this process (µs per request).

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.clients.common import Request, signed_get  # noqa: E402
from scanner.eas.params import service_instances_path, services_path  # noqa: E402
from scanner.simulator.acceptance import NonceCache, accept  # noqa: E402


@dataclass(frozen=True)
class Target:
    base_url: str
    key_id: str
    secret: str


def signed(target: Target, action: str, path: str, params: dict[str, str], nonce: str) -> Request:
    return signed_get(
        target.base_url,
        action,
        path,
        params,
        access_key_id=target.key_id,
        access_key_secret=target.secret,
        nonce=nonce,
        now=datetime.now(UTC),
    )


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


def measure_verify(count: int) -> float:
    """µs per ``verify`` of a signed ListServiceInstances request as the server receives it (the
    headers aiohttp adds unsigned included, a fresh nonce each, a NonceCache), in this process."""
    target = Target("http://127.0.0.1:8000", "LTAI5tBenchmarkKey00", "secret")
    params = {"PageNumber": "7", "PageSize": "100", "Sort": "StartTime", "Order": "asc"}
    path = service_instances_path("cn-hangzhou", "svc-benchmark")
    requests = []
    for n in range(count):
        url, headers = signed(target, "ListServiceInstances", path, params, f"verify-{n}")
        wire = [*headers.items(), ("User-Agent", "Python/3.11 aiohttp/3.14"), ("Accept-Encoding", "gzip")]
        requests.append((url.raw_path, url.raw_query_string, wire))
    secrets = {target.key_id: target.secret}.get
    nonces = NonceCache()
    now = datetime.now(UTC)
    started = time.perf_counter()
    for raw_path, raw_query, wire in requests:
        accept(
            method="GET",
            raw_path=raw_path,
            raw_query=raw_query,
            headers=wire,
            body=b"",
            secret_for=secrets,
            now=now,
            nonces=nonces,
        )
    return (time.perf_counter() - started) / count * 1e6


def run(mode: str, options: argparse.Namespace) -> None:
    if mode == "verify":
        print(f"verify    {measure_verify(options.verify_count):5.1f} µs/request (in-process, one core)")
        return
    profile: list[str] = []
    if options.profile:
        # pyinstrument (sampling; not a dependency, install it by hand) for a .txt or .html report.
        sampling = options.profile.endswith((".txt", ".html"))
        profile = ["-m", "pyinstrument", "-o"] if sampling else ["-m", "cProfile", "-o"]
        profile.append(options.profile)
    command = [
        sys.executable,
        *profile,
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
        target = Target(base_url, info["access_key_id"], info["access_key_secret"])
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
        server_user = after.user - before.user
        server_cpu = server_user + (after.system - before.system)
        total = ok + errors
        print(
            f"{mode:9s} preset={options.preset} pages={len(plan)} "
            f"concurrency={options.concurrency}x{options.clients}: "
            f"{total / elapsed:6.0f} requests/s ({errors} errors), "
            f"server CPU {server_cpu / total * 1e6:5.0f} µs/request "
            f"(user {server_user / total * 1e6:4.0f}) "
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
    parser.add_argument(
        "--mode",
        choices=("verify", "cached", "uncached", "both", "all"),
        default="all",
        help="both: cached and uncached; all: verify too (default)",
    )
    parser.add_argument("--verify-count", type=int, default=20_000, help="requests verified in verify mode")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--pages", type=int, default=300, help="distinct pages in cached mode")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="profile the server: PATH.txt/.html with pyinstrument, else cProfile stats",
    )
    options = parser.parse_args()
    modes = {"both": ("cached", "uncached"), "all": ("verify", "cached", "uncached")}
    for mode in modes.get(options.mode, (options.mode,)):
        run(mode, options)


if __name__ == "__main__":
    main()
