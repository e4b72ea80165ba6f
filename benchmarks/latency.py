"""latency: every request takes 50 ms more (simulator ``--latency-ms 50``), no rate limit.

``ideal_s`` is a lower bound no client can beat with the scanner's default concurrency::

    R = sum over regions of ceil(services / 100)              (ListServices pages)
      + sum over services of max(1, ceil(instances / 100))    (ListServiceInstances pages)
    C = min(Concurrency.total, regions * Concurrency.per_region)  (requests allowed in flight)
    D = 2                                 (a service's pages need ListServices to name it first)
    ideal_s = max(ceil(R / C), D) * latency

It counts only the pages any client must fetch (not the scanner's consistency checks) and assumes
every round of ``C`` requests is perfectly packed; the fleet is generated in this process from
the same arguments as the simulator's (``scanner.simulator.standalone.simulator_from_args``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client
from scanner.engine.config import Concurrency
from scanner.simulator.standalone import build_parser, simulator_from_args

__all__ = ["ideal_seconds", "run"]

LATENCY_MS = 50.0
PAGE_SIZE = 100


def ideal_seconds(sim_args: list[str], latency_ms: float) -> tuple[float, int]:
    """(ideal_s, R): the bound in the module docstring, for the fleet ``sim_args`` describe."""
    fleet = simulator_from_args(build_parser().parse_args(sim_args)).fleet
    services_by_region: dict[str, int] = {}
    requests = 0
    for service in fleet.live_services():
        services_by_region[service.region] = services_by_region.get(service.region, 0) + 1
        requests += max(1, math.ceil(service.live_count / PAGE_SIZE))
    requests += sum(math.ceil(n / PAGE_SIZE) for n in services_by_region.values())
    limits = Concurrency()
    allowed = min(limits.total, len(services_by_region) * limits.per_region)
    rounds = max(math.ceil(requests / allowed), 2)
    return rounds * latency_ms / 1000, requests


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    args = fleet_args(
        regions=4 if not quick else 2,
        services=100 if not quick else 20,
        instances=40_000 if not quick else 2_000,
        max_per_service=2_000 if not quick else 300,
    )
    sim_args = [*args, "--latency-ms", str(LATENCY_MS), "--prewarm"]
    ideal, requests = ideal_seconds(sim_args, LATENCY_MS)
    result: dict[str, Any] = {"latency_ms": LATENCY_MS, "ideal_s": ideal, "ideal_requests": requests}
    with SimulatorProcess(sim_args) as sim:
        result["instances"] = sim.instances
        truth = sim.truth()
        for name in ("scanner", "sdk_async"):
            job = sim.client_job(output=output_path(workdir, f"latency-{name}"))
            result[name] = run_client(name, sim, job, truth=truth)
    return result
