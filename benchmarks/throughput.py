"""throughput: a fleet of 200,000 instances, no latency, no rate limit; every client on the same fleet.

- ``scanner``: ``scanner.Scanner`` (the library API), records written as JSON lines to a file.
- ``sdk_async``: the official SDK's async client, services under a semaphore of 50, each
  service's pages in order, JSON lines written (``benchmarks.clients.sdk_async``).
- ``sdk_sync``: the SDK's sync client walking everything in order, on a fleet a tenth the size
  (same regions, a tenth of the services and instances): compare it per record.
- ``floor_aiohttp``: the same page URLs fetched with one aiohttp session and decoded with orjson,
  pre-signed, nothing else (``benchmarks.clients.floor_aiohttp``).
- ``orjson_cpu_us_per_record``: decode a page and encode its records, no I/O.

The full run measures each of the first three three times, interleaved, and keeps each client's
fastest round; its ``cpu_us_per_record`` is the least over the rounds (a neighbour's burst on
this shared machine only ever adds time). ``wall_s_rounds`` and ``cpu_us_per_record_rounds`` list
them all. The simulator pre-renders every page (``--prewarm``) so it serves from its cache and is
not the bottleneck; it runs in its own process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client

__all__ = ["run"]

ROUNDS = 3


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    regions = 4 if not quick else 2
    services = 250 if not quick else 40
    instances = 200_000 if not quick else 10_000
    cap = 5_000 if not quick else 1_000
    result: dict[str, Any] = {"instances": instances}
    with SimulatorProcess(
        [
            *fleet_args(regions=regions, services=services, instances=instances, max_per_service=cap),
            "--prewarm",
        ]
    ) as sim:
        truth = sim.truth()
        runs: dict[str, list[dict[str, Any]]] = {}
        # Interleaved rounds, keeping each client's fastest: a neighbour's burst on this shared
        # machine then spoils one round, not the comparison.
        for _ in range(1 if quick else ROUNDS):
            for name in ("scanner", "sdk_async", "floor_aiohttp"):
                job = sim.client_job(output=output_path(workdir, f"throughput-{name}"))
                run = run_client(name, sim, job, truth=None if name == "floor_aiohttp" else truth)
                runs.setdefault(name, []).append(run)
        for name, attempts in runs.items():
            best = min(attempts, key=lambda run: run["wall_s"])
            best["wall_s_rounds"] = [run["wall_s"] for run in attempts]
            best["cpu_us_per_record_rounds"] = [run["cpu_us_per_record"] for run in attempts]
            best["cpu_us_per_record"] = min(best["cpu_us_per_record_rounds"])
            best["exact"] = best["exact"] if name == "floor_aiohttp" else all(r["exact"] for r in attempts)
            result[name] = best
    result["orjson_cpu_us_per_record"] = result["floor_aiohttp"].pop("orjson_cpu_us_per_record")
    tenth = fleet_args(
        regions=regions, services=services // 10, instances=instances // 10, max_per_service=cap // 10
    )
    with SimulatorProcess([*tenth, "--prewarm"]) as sim:
        job = sim.client_job(output=output_path(workdir, "throughput-sdk_sync"))
        result["sdk_sync"] = run_client("sdk_sync", sim, job, truth=sim.truth())
        result["sdk_sync_instances"] = sim.instances
    return result
