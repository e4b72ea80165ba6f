"""memory: the scanner's peak RSS for a scan of ~10,000 and of ~1,000,000 instances, output to a file.

The large fleet is the simulator's ``large`` preset (10 regions x 1,000 services, 1,000,000
instances, long tail up to 20,000 per service). The small one has the same 10 regions with 10
services each (10,000 instances, up to 2,000 per service), so that its pages are full too. What
a scan may hold in flight is bounded the same in both (up to ``Concurrency.total`` pages of 100
decoded instances, the consumer's buffer, the dedup names of the open listings), but the small
scan ends in about 0.3 s, before it reaches that bound, while the large one stays at it for
seconds: the ratio shows the bound's cost and its allocator fragmentation as much as growth with
the fleet (the README's Performance section gives the breakdown). Peak RSS is the client
process's ``ru_maxrss`` (interpreter, aiohttp and all). In ``--quick`` the large fleet is 50,000
instances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client

__all__ = ["run"]


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    small = fleet_args(regions=10, services=10, instances=10_000, max_per_service=2_000)
    if quick:
        large = fleet_args(regions=10, services=200, instances=50_000, max_per_service=5_000)
    else:
        large = ["--preset", "large", "--seed", "6"]
    result: dict[str, Any] = {}
    for label, args in (("small", small), ("large", large)):
        with SimulatorProcess(args) as sim:
            job = sim.client_job(output=output_path(workdir, f"memory-{label}"))
            run = run_client("scanner", sim, job, truth=sim.truth())
            result[f"{label}_instances"] = sim.instances
            result[f"rss_{label}_mb"] = run["peak_rss_mb"]
            result[f"scanner_{label}"] = run
    return result
