"""org: 200 member accounts × 2 regions, a per-(account, region, action) limit nobody is told,
tokens that live 20 s, a scan long enough to refresh each several times (issue 13).

Two runs of the scanner (``Scanner(accounts=Organization())``, every account in flight):

- ``cpu_bound_qps``: the same organisation with no rate limit, what the machine allows;
- ``scanner``: under the limit. ``achieved_qps`` there is the rate of successful
  ListServiceInstances requests (the action that carries the scan) over the client's wall time,
  to hold against ``summed_limit_qps`` = limit × scopes (accounts × regions): the goal is
  ≥ 0.85 × min(summed, CPU-bound).

``exact``: every account's key digest equals the simulator's (``/_simulator/org/digests``).
``assume_role_calls`` against ``accounts + token_refreshes`` (goal: no more).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, output_path, run_client

__all__ = ["run"]

ACTION = "ListServiceInstances"
TOKEN_TTL_S = 20


def _shape(quick: bool) -> dict[str, Any]:
    if quick:
        return {"accounts": 20, "services": 6, "instances": 6_000, "limit": 2.0}
    # 1 qps: the scanner's adaptive floor is 0.5 qps (RateLimit.min_rate), a scope must be above it.
    return {"accounts": 200, "services": 30, "instances": 240_000, "limit": 1.0}


def _ok_requests(run: dict[str, Any]) -> int | None:
    if run["requests_by_region"] is None:
        return None
    throttled = run["throttled_by_region"] or {}
    return sum(
        int(actions.get(ACTION, 0)) - int(throttled.get(region, {}).get(ACTION, 0))
        for region, actions in run["requests_by_region"].items()
    )


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    shape = _shape(quick)
    accounts, regions = shape["accounts"], 2
    base = [
        "--preset", "org-small", "--seed", "6", "--accounts", str(accounts), "--non-success", "0",
        "--regions", str(regions), "--services-per-region", str(shape["services"]),
        "--org-instances", str(shape["instances"]), "--distribution", "even",
        "--token-ttl", str(TOKEN_TTL_S),
    ]  # fmt: skip
    scopes = accounts * regions
    result: dict[str, Any] = {
        "accounts": accounts,
        "limit_qps_per_scope": shape["limit"],
        "scopes": scopes,
        "token_ttl_s": TOKEN_TTL_S,
        "summed_limit_qps": round(shape["limit"] * scopes, 1),
    }
    for name, extra in (("cpu_bound", []), ("scanner", ["--rate-limit", str(shape["limit"])])):
        with SimulatorProcess([*base, *extra]) as sim:
            truth = sim._admin("org/digests")["accounts"]
            job = sim.client_job(
                output=output_path(workdir, f"org-{name}"),
                sts_endpoint=sim.info["sts_endpoint"],
                resourcemanager_endpoint=sim.info["resourcemanager_endpoint"],
                accounts_in_flight=accounts,
            )
            result_run = run_client("scanner_org", sim, job, truth=None)
        ok = _ok_requests(result_run)
        result_run["achieved_qps"] = (
            round(ok / result_run["wall_s"], 1) if ok is not None else result_run["achieved_qps"]
        )
        summary = result_run.get("summary", {})
        result_run["assume_role_calls"] = summary.get("assume_role_calls")
        result_run["token_refreshes"] = summary.get("token_refreshes")
        result_run["exact"] = summary.pop("digest_by_account", None) == {
            a: d for a, d in truth.items() if d["count"]
        }
        if name == "cpu_bound":
            result["cpu_bound_qps"] = result_run["achieved_qps"]
        else:
            result["scanner"] = result_run
    return result
