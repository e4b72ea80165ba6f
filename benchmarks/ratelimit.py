"""ratelimit: the simulator throttles above ``limit_qps`` per (region, action); nobody is told the limit.

The simulator runs with ``--rate-limit LIMIT`` (a token bucket per region and action, burst 5,
answering 429 ``Throttling``). ``achieved_qps`` here is the rate of *successful*
ListServiceInstances requests per region (the action that carries the scan), averaged over the
regions, over the client's whole wall time: the figure to hold against ``limit_qps``.
``throttled_fraction`` is throttled / all requests the simulator received.

The SDK's async client runs with no retry configured, the SDK's default: its throttled calls are
errors, the services they hit are incomplete, and ``exact`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client

__all__ = ["run"]

LIMIT_QPS = 20.0
ACTION = "ListServiceInstances"


def _achieved(run: dict[str, Any], regions: int) -> float:
    if run["requests_by_region"] is None:
        # Only the client's own totals (see harness.run_client): successful requests of any
        # action per region, which overstates by the few ListServices calls.
        return round(float(run["achieved_qps"]) / regions, 2)
    throttled = run["throttled_by_region"] or {}
    rates = []
    for region, actions in run["requests_by_region"].items():
        ok = actions.get(ACTION, 0) - throttled.get(region, {}).get(ACTION, 0)
        rates.append(ok / run["wall_s"])
    return round(sum(rates) / len(rates), 2) if rates else 0.0


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    args = fleet_args(
        regions=2,
        services=60 if not quick else 10,
        instances=30_000 if not quick else 2_000,
        max_per_service=2_000 if not quick else 300,
    )
    result: dict[str, Any] = {"limit_qps": LIMIT_QPS}
    with SimulatorProcess([*args, "--rate-limit", str(LIMIT_QPS), "--prewarm"]) as sim:
        result["instances"] = sim.instances
        truth = sim.truth()
        for name in ("scanner", "sdk_async"):
            job = sim.client_job(output=output_path(workdir, f"ratelimit-{name}"))
            run = run_client(name, sim, job, truth=truth)
            run["achieved_qps"] = _achieved(run, len(sim.endpoints))
            result[name] = run
    return result
