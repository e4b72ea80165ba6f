"""Run the simulator as a process: ``python -m scanner.simulator`` (and ``eas-scan simulate``).

Once every region is listening it prints exactly one JSON line to stdout::

    {"endpoints": {"cn-hangzhou": "http://127.0.0.1:41001", ...},
     "access_key_id": "...", "access_key_secret": "...", "instances": 1000}

An organisation (``--preset org-small`` / ``org-large``, or ``--accounts N``) adds
``sts_endpoint``, ``resourcemanager_endpoint``, ``management_account_id``, ``role_name``,
``external_id`` and ``accounts`` (``[{"id", "name", "folder", "status", "instances"}, ...]``);
the key is then the management account's RAM user and ``instances`` counts every member's.

and serves until SIGINT or SIGTERM, then exits 0. Counters, ground truth and runtime fault
switches are on the loopback admin routes (``scanner.simulator.admin``) of every region's port.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from scanner.errors import ConfigError
from scanner.simulator.churn import ChurnRates
from scanner.simulator.faults import FaultConfig
from scanner.simulator.org import ORG_PRESETS, OrgSpec
from scanner.simulator.server import DEFAULT_PAGE_CACHE_BYTES, Simulator
from scanner.simulator.spec import PRESETS, Even, FleetSpec, LongTail

__all__ = ["build_parser", "main", "simulator_from_args"]

_ADMIN_HELP = """\
admin routes (on every region's port, loopback, unsigned):
  GET  /_simulator/info | /_simulator/counters | /_simulator/now
  POST /_simulator/counters/reset
  GET  /_simulator/fleet-digest[?mode=current|throughout|at_any&t0=S&t1=S&content=1]
  GET|PUT|PATCH /_simulator/faults      (JSON: FaultConfig fields)
  GET|PUT /_simulator/churn             (JSON: ChurnRates fields)
  POST /_simulator/forbid               {"region": "cn-hangzhou", "forbidden": true}
organisation (org presets, --accounts):
  GET  /_simulator/org | /_simulator/org/digests[?content=1]
  GET  /_simulator/fleet-digest?account=ID
  PATCH /_simulator/org                 {"token_ttl": 20, "assume_role_rate": 5, ...}
  PATCH /_simulator/org/accounts/ID     {"status": "CreateFailed", "role_exists": false, ...}
  POST /_simulator/org/expire-tokens    {"account": null}
"""


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _retry_after(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of milliseconds or 'auto', got {text}")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a simulated PAI-EAS API on loopback, one port per region, until SIGINT/SIGTERM.",
        epilog=_ADMIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument(
        "--preset",
        choices=[*sorted(PRESETS), *sorted(ORG_PRESETS)],
        default="small",
        help="fleet, or organisation (org-*) (default: small)",
    )
    fleet.add_argument("--seed", type=int, default=0, help="fleet, keys and faults derive from it")
    fleet.add_argument("--regions", type=int, help="custom fleet: number of regions")
    fleet.add_argument("--services-per-region", type=int, help="custom fleet: services in each region")
    fleet.add_argument("--instances", type=int, help="custom fleet: total instances")
    fleet.add_argument(
        "--distribution",
        choices=("longtail", "even"),
        help="custom fleet: how instances spread over services (default: longtail)",
    )
    fleet.add_argument("--max-per-service", type=int, default=20_000, help="longtail cap (default: 20000)")

    net = parser.add_argument_group("network and keys")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback)")
    net.add_argument("--port", type=int, default=0, help="region i listens on PORT+i (default 0: ephemeral)")
    net.add_argument("--access-key-id", help="accepted AccessKey id (default: fixed per seed)")
    net.add_argument("--access-key-secret", help="its secret")
    net.add_argument("--security-token", help="require this STS token with the key")
    net.add_argument(
        "--page-cache-mb",
        type=float,
        default=DEFAULT_PAGE_CACHE_BYTES / 2**20,
        help=f"rendered-page cache bound in MiB, 0 disables (default: {DEFAULT_PAGE_CACHE_BYTES // 2**20})",
    )
    net.add_argument(
        "--prewarm",
        action="store_true",
        help="render every service's default-order pages (PageSize=100) into the cache before listening",
    )

    faults = parser.add_argument_group("faults (all seeded; rates are per request)")
    faults.add_argument("--latency-ms", type=_non_negative, default=0.0, help="added to every request")
    faults.add_argument("--jitter-ms", type=_non_negative, default=0.0, help="plus uniform [0, JITTER)")
    faults.add_argument("--rate-limit", type=float, metavar="QPS", help="per (region, action)")
    faults.add_argument("--burst", type=int, default=5, help="rate-limit burst (default: 5)")
    faults.add_argument(
        "--throttle-status",
        type=int,
        choices=(429, 400),
        default=429,
        help="429 Throttling (default) or 400 Throttling.User",
    )
    faults.add_argument(
        "--retry-after-ms",
        type=_retry_after,
        help="send x-acs-retry-after (ms) when throttling; 'auto': the time until a token is free",
    )
    faults.add_argument(
        "--fault-rate", type=_rate, default=0.0, help="random 500 InternalError or 503 ServiceUnavailable"
    )
    faults.add_argument("--internal-error-rate", type=_rate, default=0.0, help="random 500 InternalError")
    faults.add_argument("--unavailable-rate", type=_rate, default=0.0, help="random 503 ServiceUnavailable")
    faults.add_argument("--reset-rate", type=_rate, default=0.0, help="reset the connection mid-body")
    faults.add_argument("--truncate-rate", type=_rate, default=0.0, help="200 with a body cut short")
    faults.add_argument("--not-json-rate", type=_rate, default=0.0, help="200 with an HTML body")
    faults.add_argument("--slow-rate", type=_rate, default=0.0, help="delay this fraction by --slow-ms")
    faults.add_argument("--slow-ms", type=_non_negative, default=0.0, help="delay of a slow response")

    org = parser.add_argument_group(
        "organisation (org presets, or --accounts; the custom fleet flags then shape each member's fleet)"
    )
    org.add_argument("--accounts", type=int, metavar="N", help="member accounts (default: the org preset's)")
    org.add_argument("--org-instances", type=int, metavar="N", help="instances over all members")
    org.add_argument(
        "--account-distribution",
        choices=("longtail", "even"),
        help="how --org-instances spread over the members: long-tailed (the preset's, the default), "
        "or the same for each",
    )
    org.add_argument("--folders", type=int, metavar="N", help="child folders under the root")
    org.add_argument("--role-name", help="the member role (default: ResourceDirectoryAccountAccessRole)")
    org.add_argument("--external-id", help="every role requires this ExternalId")
    org.add_argument(
        "--token-ttl", type=int, metavar="S", help="tokens live at most S seconds, whatever was asked"
    )
    org.add_argument(
        "--max-session-duration", type=int, metavar="S", help="the roles' maximum (default: 3600)"
    )
    org.add_argument(
        "--assume-role-rate", type=float, metavar="QPS", help="AssumeRole quota (Throttling.User)"
    )
    org.add_argument("--assume-role-burst", type=int, metavar="N", help="its burst (default: 10)")
    org.add_argument("--non-success", type=int, metavar="N", help="members in a non-success status")
    org.add_argument(
        "--missing-role", type=int, metavar="N", help="members without the role (EntityNotExist.Role)"
    )
    org.add_argument(
        "--eas-denied", type=int, metavar="N", help="members whose role gets Forbidden.RAM from EAS"
    )
    org.add_argument(
        "--accounts-page-cap", type=int, metavar="N", help="ListAccounts answers at most N a page"
    )
    org.add_argument(
        "--list-accounts-rate", type=float, metavar="QPS", help="ListAccounts quota (Throttling.User)"
    )
    org.add_argument(
        "--list-management",
        action="store_true",
        default=None,
        help="ListAccounts lists the management account too (it has no member role)",
    )
    org.add_argument("--rpc-latency-ms", type=_non_negative, help="added to every STS/ResourceManager answer")
    org.add_argument(
        "--assume-role-error-rate", type=_rate, help="random 503 ServiceUnavailable on AssumeRole"
    )

    churn = parser.add_argument_group("churn (events per second, fleet-wide)")
    churn.add_argument("--instance-start-rate", type=_non_negative, default=0.0)
    churn.add_argument("--instance-stop-rate", type=_non_negative, default=0.0)
    churn.add_argument("--instance-restart-rate", type=_non_negative, default=0.0)
    churn.add_argument("--service-create-rate", type=_non_negative, default=0.0)
    churn.add_argument("--service-delete-rate", type=_non_negative, default=0.0)
    return parser


def _spec(args: argparse.Namespace) -> FleetSpec | None:
    custom = (args.regions, args.services_per_region, args.instances, args.distribution)
    if all(value is None for value in custom):
        return None
    base = PRESETS[args.preset] if args.preset in PRESETS else ORG_PRESETS[args.preset].fleet
    distribution = Even() if args.distribution == "even" else LongTail(max_per_service=args.max_per_service)
    return FleetSpec(
        regions=args.regions if args.regions is not None else base.regions,
        services_per_region=(
            args.services_per_region if args.services_per_region is not None else base.services_per_region
        ),
        total_instances=args.instances if args.instances is not None else base.total_instances,
        distribution=distribution,
    )


_ORG_FLAGS = {
    "accounts": "members",
    "org_instances": "total_instances",
    "folders": "folders",
    "role_name": "role_name",
    "external_id": "external_id",
    "token_ttl": "token_ttl",
    "max_session_duration": "max_session_duration",
    "assume_role_rate": "assume_role_rate",
    "assume_role_burst": "assume_role_burst",
    "non_success": "non_success",
    "missing_role": "missing_role",
    "eas_denied": "eas_denied",
    "accounts_page_cap": "accounts_page_cap",
    "list_accounts_rate": "list_accounts_rate",
    "list_management": "list_management",
    "rpc_latency_ms": "rpc_latency_ms",
    "assume_role_error_rate": "assume_role_error_rate",
}


def _org(args: argparse.Namespace) -> OrgSpec | None:
    """The organisation the flags describe (None: a single account)."""
    changes = {
        field: getattr(args, flag) for flag, field in _ORG_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.preset not in ORG_PRESETS and not changes and args.account_distribution is None:
        return None
    base = ORG_PRESETS.get(args.preset, ORG_PRESETS["org-small"])
    if args.account_distribution is not None:
        # "longtail": the preset's own long tail (every preset's sizes are long-tailed).
        changes["account_sizes"] = Even() if args.account_distribution == "even" else base.account_sizes
    template = _spec(args)
    if template is not None:
        changes["fleet"] = template
        if args.instances is not None and args.org_instances is None:
            changes["total_instances"] = args.instances
    return base.with_changes(**changes)


def simulator_from_args(args: argparse.Namespace) -> Simulator:
    """The ``Simulator`` the parsed command line describes (not yet started)."""
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        internal_error_rate=args.internal_error_rate + args.fault_rate / 2,
        unavailable_rate=args.unavailable_rate + args.fault_rate / 2,
        reset_rate=args.reset_rate,
        truncate_rate=args.truncate_rate,
        not_json_rate=args.not_json_rate,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        rate_limit=args.rate_limit,
        burst=args.burst,
        throttle_status=args.throttle_status,
        retry_after_ms=args.retry_after_ms,
    )
    churn = ChurnRates(
        instance_starts=args.instance_start_rate,
        instance_stops=args.instance_stop_rate,
        instance_restarts=args.instance_restart_rate,
        service_creates=args.service_create_rate,
        service_deletes=args.service_delete_rate,
    )
    org = _org(args)
    return Simulator(
        preset=args.preset if org is None else "small",
        org=org,
        spec=_spec(args) if org is None else None,
        seed=args.seed,
        host=args.host,
        base_port=args.port,
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        security_token=args.security_token,
        faults=faults,
        churn=churn,
        page_cache_bytes=int(args.page_cache_mb * 2**20),
    )


async def _serve(sim: Simulator, *, prewarm: bool, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        if prewarm:
            sim.prewarm()
        async with sim:
            line: dict[str, Any] = {
                "endpoints": sim.endpoints,
                "access_key_id": sim.access_key_id,
                "access_key_secret": sim.access_key_secret,
                "instances": sim.fleet.instance_count,
            }
            if sim.org is not None:
                org = sim.org
                accounts = org.summary_accounts()
                line["instances"] = sum(account["instances"] for account in accounts)
                line["sts_endpoint"] = sim.sts_endpoint
                line["resourcemanager_endpoint"] = sim.resourcemanager_endpoint
                line["management_account_id"] = org.management_account_id
                line["role_name"] = org.spec.role_name
                line["external_id"] = org.spec.external_id
                line["accounts"] = accounts
            out.write(orjson.dumps(line).decode() + "\n")
            out.flush()
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve until SIGINT/SIGTERM, return the exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        sim = simulator_from_args(args)
        asyncio.run(_serve(sim, prewarm=args.prewarm, out=sys.stdout))
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
