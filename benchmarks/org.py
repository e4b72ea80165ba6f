"""org: 200 member accounts × 2 regions, a per-(account, region, action) limit nobody is told,
tokens that live 20 s, a scan long enough to refresh each several times (issue 13).

The organisation gives every member the same size (``--account-distribution even``) and every
service the same few instances, so each of the 400 scopes has the same work: 80 services, one
ListServiceInstances request each, about 80 s at 1/s: four token lifetimes. (With the default
long-tailed sizes, the largest account's scopes needed ~4x the median's requests, so its scopes
alone set the wall at ~115 s, and any client reached ~107 qps of the 400 summed: the scenario
measured the largest account, not whether 400 scopes run at their limits at once.)

Two runs of the scanner (``Scanner(accounts=Organization())``, every account in flight):

- ``cpu_bound_qps``: the same organisation with no rate limit, what the machine allows;
- ``scanner``: under the limit. ``achieved_qps`` there is the rate of successful
  ListServiceInstances requests (the action that carries the scan) over the client's wall time.

The goal is ≥ 0.85 × min(summed, CPU-bound, work-bound), one bound for each thing outside the
client that caps its rate:

- ``summed_limit_qps`` = limit × scopes (accounts × regions): the server admits no more;
- ``cpu_bound_qps``: this machine (client and simulator sharing its cores) serves no more;
- ``work_bound_qps``: the organisation has no more work per second to give. The
  ListServiceInstances requests of the whole organisation (one per page, plus the one-record
  look that closes a listing of more than one page) over the time its longest scope
  (``longest_scope_requests``) needs at the limit after the server's burst: a scope with less
  work than the longest goes idle before the end, and its share of the summed limit is lost
  whatever the client does. With even sizes it is just above the summed limit (the burst), so
  the summed limit is the bound; it stays computed so that a shape that breaks this shows.

Where the scanner loses against the summed limit (the simulator's counters sampled every 2 s):
the accounts open over the first 5-15 s (AssumeRole, then ListServices; longer the busier the
machine), and a late account's scopes finish as late, so the scan's tail is that spread; and
all 400 scopes start within those seconds, before any has learned the limit, so none starts
from its peers' rate: each pays its first round (8 into a bucket of 5: 3 throttled) and ramps
from that burst (5/s) until 3 peers' ramps have ended and measured what got through, then
follows their median (``RateController.follow``). What is left is steady state, the curve's
probes above 1/s (~6% throttled in simulate_org at 50 ms answers), more the busier the
machine: a loaded client's answers take seconds (traced: 3-10 s), and a probe runs on for an
answer's time before its first throttle comes back.

``exact``: every account's key digest equals the simulator's (``/_simulator/org/digests``).
``assume_role_calls`` against ``accounts + token_refreshes`` (goal: no more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, output_path, run_client
from scanner.eas.params import MAX_PAGE_SIZE
from scanner.simulator.org import SUCCESS_STATUSES
from scanner.simulator.standalone import build_parser, simulator_from_args

__all__ = ["run"]

ACTION = "ListServiceInstances"
TOKEN_TTL_S = 20


def _shape(quick: bool) -> dict[str, Any]:
    if quick:
        return {"accounts": 20, "services": 6, "instances": 6_000, "limit": 2.0}
    # 1 qps: the scanner's adaptive floor is 0.5 qps (RateLimit.min_rate), a scope must be above it.
    # 80 services of 7-8 instances per (account, region): 80 one-page listings, ~80 s at 1/s.
    return {"accounts": 200, "services": 80, "instances": 240_000, "limit": 1.0}


def _ok_requests(run: dict[str, Any]) -> int | None:
    if run["requests_by_region"] is None:
        return None
    throttled = run["throttled_by_region"] or {}
    return sum(
        int(actions.get(ACTION, 0)) - int(throttled.get(region, {}).get(ACTION, 0))
        for region, actions in run["requests_by_region"].items()
    )


def _work_bound(args: Sequence[str]) -> tuple[float, int]:
    """``(work_bound_qps, longest scope's requests)`` of the organisation ``args`` describe.

    Built here, in process, from the same flags and seed as the simulator's: the fleets only.
    """
    parsed = build_parser().parse_args(list(args))
    org = simulator_from_args(parsed).org
    assert org is not None
    assert parsed.rate_limit is not None
    total = longest = 0
    for member in org.members:
        if member.status not in SUCCESS_STATUSES:
            continue
        fleet = org.tenant(member.account_id).fleet
        for region in fleet.region_ids():
            requests = 0
            for service in fleet.region(region).live_services():
                pages = max(1, math.ceil(service.live_count / MAX_PAGE_SIZE))
                requests += pages + (pages > 1)
            total += requests
            longest = max(longest, requests)
    seconds = max(longest - parsed.burst, 1) / parsed.rate_limit
    return round(total / seconds, 1), longest


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    shape = _shape(quick)
    accounts, regions = shape["accounts"], 2
    base = [
        "--preset", "org-small", "--seed", "6", "--accounts", str(accounts), "--non-success", "0",
        "--regions", str(regions), "--services-per-region", str(shape["services"]),
        "--org-instances", str(shape["instances"]), "--account-distribution", "even",
        "--distribution", "even", "--token-ttl", str(TOKEN_TTL_S),
    ]  # fmt: skip
    scopes = accounts * regions
    result: dict[str, Any] = {
        "accounts": accounts,
        "limit_qps_per_scope": shape["limit"],
        "scopes": scopes,
        "token_ttl_s": TOKEN_TTL_S,
        "summed_limit_qps": round(shape["limit"] * scopes, 1),
    }
    result["work_bound_qps"], result["longest_scope_requests"] = _work_bound(
        [*base, "--rate-limit", str(shape["limit"])]
    )
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
