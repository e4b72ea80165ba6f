"""realistic: a real account's conditions at once: latency, an unknown rate limit, and server errors.

The simulator runs with ``--latency-ms 80 --rate-limit 30 --fault-rate 0.03``: every request
takes 80 ms more; each (region, action) admits 30 requests per second (a token bucket, burst 5,
answering 429 ``Throttling`` at once); and 3% of the admitted requests answer 500
``InternalError`` or 503 ``ServiceUnavailable`` (half each, seeded), after the latency. Nobody
is told the limit. The fleet is long-tailed (60,000 instances, 3 regions x 100 services, up to
3,000 per service), so its regions hold different amounts of work (185 to 308 instance pages).
In ``--quick``: 2 regions x 10 services, 1,000 instances (23 instance pages), for exactness only.

- ``achieved_qps``: ListServiceInstances requests the limit admitted (answered 200, 500 or 503:
  each took a token) in the region with the most of them, per second of the client's wall time.
  That region's work bounds the scan; a region with less finishes early, and a rate averaged
  over every region and the whole wall would charge its idle end to the client.
  ``achieved_qps_by_region`` lists every region's figure. The goal: at least 0.9x ``limit_qps``.
- ``throttled_fraction``: throttled / all requests the simulator received (every action).
- ``exact``: the output equals the fleet, whatever was retried.

The SDK's async client runs with no retry configured, its default: its throttled and failed
calls are errors, the services (or regions) they hit are incomplete, and ``exact`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client

__all__ = ["ERROR_RATE", "LATENCY_MS", "LIMIT_QPS", "run"]

LATENCY_MS = 80.0
LIMIT_QPS = 30.0
ERROR_RATE = 0.03
ACTION = "ListServiceInstances"


def _admitted_by_region(run: dict[str, Any]) -> dict[str, float] | None:
    """Admitted ListServiceInstances requests per second of wall time, per region (None: no counts)."""
    if run["requests_by_region"] is None or not run["wall_s"]:
        return None
    throttled = run["throttled_by_region"] or {}
    return {
        region: round((actions.get(ACTION, 0) - throttled.get(region, {}).get(ACTION, 0)) / run["wall_s"], 2)
        for region, actions in run["requests_by_region"].items()
    }


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    args = fleet_args(
        regions=3 if not quick else 2,
        services=100 if not quick else 10,
        instances=60_000 if not quick else 1_000,
        max_per_service=3_000 if not quick else 200,
    )
    faults = ["--latency-ms", LATENCY_MS, "--rate-limit", LIMIT_QPS, "--fault-rate", ERROR_RATE]
    result: dict[str, Any] = {"latency_ms": LATENCY_MS, "limit_qps": LIMIT_QPS, "error_rate": ERROR_RATE}
    with SimulatorProcess([*args, *map(str, faults), "--prewarm"]) as sim:
        result["instances"] = sim.instances
        truth = sim.truth()
        for name in ("scanner", "sdk_async"):
            job = sim.client_job(output=output_path(workdir, f"realistic-{name}"))
            run = run_client(name, sim, job, truth=truth)
            by_region = _admitted_by_region(run)
            run["achieved_qps_by_region"] = by_region
            if by_region:
                busiest = max(by_region, key=lambda region: by_region[region])
                run["achieved_qps"] = by_region[busiest]
            result[name] = run
    return result
