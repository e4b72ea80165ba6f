"""The command line's flags: ``build_parser`` (argparse), with one-line errors that exit 2.

Values are checked here when a flag alone can be judged (a region name, REGION=URL, a positive
number); checks that need several flags or the file system are in ``config``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from scanner import Concurrency, ConfigError, ConnectionLimits, RetryPolicy, Timeouts, __version__
from scanner.cli.engine import add_engine_flags
from scanner.cli.outcome import EXIT_USAGE
from scanner.endpoints import validate_region
from scanner.query import MAX_PAGE_SIZE, InstanceSort, Order, ResourceType, Role

__all__ = ["ORG_PRESETS", "PRESETS", "build_parser"]

#: Simulated fleets of one account; ``ORG_PRESETS``: simulated organisations (scanned as --org).
ORG_PRESETS = ("org-small", "org-large")
PRESETS = ("small", "medium", "large", *ORG_PRESETS)

SCAN_EXAMPLES = """\
examples:
  eas-scan scan --simulate                        try it on the embedded simulator (no account)
  eas-scan scan --simulate medium -o fleet.jsonl  a bigger simulated fleet, to a file
  eas-scan scan -o fleet.jsonl --summary run.json every region of the account in the environment
  eas-scan scan --profile prod --regions cn-shanghai,cn-beijing --instance-status Running
  eas-scan scan --services my-llm --format csv -o llm.csv
  eas-scan scan --endpoint cn-shanghai=http://127.0.0.1:8001   a simulator or proxy
  eas-scan scan --output-dir scan/ --format parquet   one part per region, resumable
  eas-scan scan --output-dir scan/ --resume          finish an interrupted scan
  eas-scan scan --output-dir scan/ --shard 0/4       a quarter of the regions (run 0/4..3/4)
  eas-scan scan --org --role-name EasInventoryReader -o org.jsonl   every member account
  eas-scan scan --accounts accounts.toml --summary run.json          the accounts of a file
  eas-scan scan --simulate org-small              a simulated organisation, scanned as --org
  eas-scan scan --output-dir scan/ --engine ray --workers 4   on Ray (eas-fleet-scanner[ray])

credentials come from the Alibaba Cloud default chain: ALIBABA_CLOUD_ACCESS_KEY_ID,
ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN), the aliyun CLI profile in
~/.aliyun/config.json (--profile or ALIBABA_CLOUD_PROFILE), ~/.alibabacloud/credentials.ini, or an
ECS RAM role. Secrets are never taken as flags.

exit codes: 0 complete, 3 finished but incomplete, 2 bad usage or configuration,
1 fatal (no credentials, every region refused, the output could not be written), 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that point at --help (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _csv_list(flag: str) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{flag} takes a comma-separated list without empty items")
        return items

    return parse


def _positive(kind: type[int] | type[float], flag: str) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} must be positive, got {text!r}")
        return value

    return parse


def _regions(text: str) -> list[str] | str:
    if text.strip() == "all":
        return "all"
    regions: list[str] = _csv_list("--regions")(text)
    for region in regions:
        try:
            validate_region(region)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return regions


def _endpoint(text: str) -> tuple[str, str]:
    region, sep, url = text.partition("=")
    if not sep or not region.strip() or not url.strip():
        raise argparse.ArgumentTypeError(
            f"--endpoint takes REGION=URL (e.g. cn-shanghai=http://127.0.0.1:8001), got {text!r}"
        )
    return region.strip(), url.strip()


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise argparse.ArgumentTypeError(f"--is-spot takes true or false, got {text!r}")


def _choices(values: Sequence[Any]) -> list[str]:
    return [str(value) for value in values]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eas-scan", description="Inventory every PAI-EAS service instance of an account.")
    parser.add_argument("--version", action="version", version=f"eas-scan {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="{scan,status,diff,simulate}", parser_class=_Parser
    )

    scan = commands.add_parser(
        "scan",
        help="scan an account (or the simulator) and write every instance",
        description="Scan every region and service and stream each instance as one record.",
        epilog=SCAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _what_to_scan(scan.add_argument_group("what to scan"))
    _several_accounts(scan.add_argument_group("several accounts (a Resource Directory, or an accounts file)"))
    _instance_filters(scan.add_argument_group("instance filters (ListServiceInstances parameters)"))
    _speed_and_resilience(scan.add_argument_group("speed and resilience"))
    _output(scan.add_argument_group("output"))
    add_engine_flags(scan.add_argument_group("engine (with --output-dir)"))
    status = commands.add_parser(
        "status",
        help="what a scan directory holds: complete, incomplete, missing parts (exit 0 if complete)",
        description="The parts of a scan directory (or of the shards' directories of one scan): "
        "exit 0 when the scan is complete, 3 when it is not.",
    )
    status.add_argument("directories", metavar="DIR", nargs="+", type=Path, help="scan directory")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    diff = commands.add_parser(
        "diff",
        help="the instances added, removed and changed between two scans",
        description="Compare two scans (scan directories or record files) by (AccountId, ClusterId, "
        "ServiceName, InstanceName): one JSON line per change. A scan written as shards into several "
        "directories is given as DIR1,DIR2,... Exit 0 when everything was compared, 3 when a region "
        "incomplete in either scan was not compared.",
    )
    diff.add_argument("old", metavar="OLD", help="the earlier scan")
    diff.add_argument("new", metavar="NEW", help="the later scan")
    diff.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write the changes to FILE (default: stdout)"
    )
    diff.add_argument("--summary", metavar="FILE", type=Path, help="also write the counts as JSON to FILE")
    commands.add_parser(
        "simulate",
        help="run the embedded EAS simulator on loopback (see eas-scan simulate --help)",
        add_help=False,
    )
    return parser


def _what_to_scan(where: argparse._ArgumentGroup) -> None:
    where.add_argument(
        "--regions",
        metavar="all|R1,R2",
        type=_regions,
        help="regions to scan (default: all, or the --endpoint ones)",
    )
    where.add_argument(
        "--services", metavar="S1,S2", type=_csv_list("--services"), help="only these services"
    )
    where.add_argument("--service-filter", metavar="TEXT", help="only services whose name contains TEXT")
    where.add_argument(
        "--endpoint",
        metavar="REGION=URL",
        action="append",
        type=_endpoint,
        default=[],
        help="send a region's requests to URL (a simulator, a proxy); repeatable",
    )
    where.add_argument("--endpoint-type", choices=["public", "vpc"], default="public", help="default: public")
    where.add_argument("--profile", metavar="NAME", help="profile in ~/.aliyun/config.json")
    where.add_argument(
        "--simulate",
        nargs="?",
        const="small",
        choices=PRESETS,
        metavar="small|medium|large|org-small|org-large",
        help="scan the embedded simulator instead of an account (default preset: small; "
        "org-*: an organisation, scanned as --org)",
    )


def _several_accounts(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--org",
        action="store_true",
        help="scan every member account of the Resource Directory (the credentials: its management account)",
    )
    group.add_argument(
        "--org-folder", metavar="FOLDER_ID", help="only the members of this folder (with --org)"
    )
    group.add_argument(
        "--include-accounts",
        metavar="ID,..",
        type=_csv_list("--include-accounts"),
        help="only these member accounts (with --org)",
    )
    group.add_argument(
        "--exclude-accounts",
        metavar="ID,..",
        type=_csv_list("--exclude-accounts"),
        help="not these member accounts (with --org)",
    )
    group.add_argument("--accounts", metavar="FILE", type=Path, help="scan the accounts of an accounts.toml")
    group.add_argument(
        "--role-name",
        metavar="NAME",
        help="the role assumed in each account (default: ResourceDirectoryAccountAccessRole)",
    )
    group.add_argument(
        "--external-id", metavar="VALUE", help="AssumeRole's ExternalId, if the role requires one"
    )
    group.add_argument(
        "--role-session-name",
        metavar="NAME",
        help="AssumeRole's RoleSessionName (default: eas-fleet-scanner)",
    )
    group.add_argument(
        "--role-duration",
        type=_positive(int, "--role-duration"),
        metavar="SECONDS",
        help="the credentials' lifetime asked for, 900-43200 (default: 3600); refreshed before they expire",
    )
    group.add_argument(
        "--sts-endpoint", metavar="URL", help="STS base URL (default: https://sts.aliyuncs.com)"
    )
    group.add_argument(
        "--resourcemanager-endpoint",
        metavar="URL",
        help="ResourceManager base URL (default: https://resourcemanager.aliyuncs.com)",
    )
    group.add_argument(
        "--concurrency-per-account",
        type=_positive(int, "--concurrency-per-account"),
        metavar="N",
        help="one account's requests in flight (default: 16)",
    )
    group.add_argument(
        "--accounts-in-flight",
        type=_positive(int, "--accounts-in-flight"),
        metavar="N",
        help="accounts scanned at once (default: 32)",
    )


def _instance_filters(filters: argparse._ArgumentGroup) -> None:
    filters.add_argument(
        "--filter", metavar="TEXT", help="instance name, instance IP, host IP or instance type"
    )
    filters.add_argument("--instance-status", metavar="S", help="e.g. Running")
    filters.add_argument("--instance-type", metavar="T", help="e.g. ecs.c7.large")
    filters.add_argument("--instance-ip", metavar="IP")
    filters.add_argument("--instance-name", metavar="N")
    filters.add_argument("--host-ip", metavar="IP")
    filters.add_argument("--resource-type", choices=_choices(list(ResourceType)))
    filters.add_argument("--role", choices=_choices(list(Role)))
    filters.add_argument("--is-spot", type=_bool, metavar="true|false")
    filters.add_argument("--sort", choices=_choices(list(InstanceSort)), help="default: StartTime")
    filters.add_argument("--order", choices=_choices(list(Order)), help="default: asc (new instances last)")
    filters.add_argument(
        "--page-size", type=_positive(int, "--page-size"), metavar="N", default=MAX_PAGE_SIZE, help="1-100"
    )


def _speed_and_resilience(knobs: argparse._ArgumentGroup) -> None:
    knobs.add_argument(
        "--concurrency",
        type=_positive(int, "--concurrency"),
        metavar="N",
        help=f"requests in flight (default {Concurrency().total})",
    )
    knobs.add_argument(
        "--rate-limit",
        type=_positive(float, "--rate-limit"),
        metavar="QPS",
        help="ceiling per region and API (default: none, adapts to throttling)",
    )
    knobs.add_argument(
        "--max-attempts",
        type=_positive(int, "--max-attempts"),
        metavar="N",
        help=f"per request (default {RetryPolicy().max_attempts})",
    )
    knobs.add_argument(
        "--timeout",
        type=_positive(float, "--timeout"),
        metavar="SECONDS",
        help=f"per request (default {Timeouts().total:g})",
    )
    knobs.add_argument(
        "--max-response-mib",
        type=_positive(int, "--max-response-mib"),
        metavar="N",
        help=f"largest response body, after decompression, in MiB (default "
        f"{ConnectionLimits().max_response_bytes // 2**20}); a larger answer fails that request",
    )


def _output(out: argparse._ArgumentGroup) -> None:
    out.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write records to FILE (default: stdout)"
    )
    out.add_argument(
        "--output-dir",
        metavar="DIR",
        type=Path,
        help="write a scan directory: one part per region, committed as each region ends, and a manifest",
    )
    out.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet"],
        default="jsonl",
        help="default: jsonl; parquet needs the extra eas-fleet-scanner[parquet] and -o or --output-dir",
    )
    out.add_argument(
        "--resume",
        action="store_true",
        help="with --output-dir: keep the complete parts, scan only the missing or incomplete regions",
    )
    out.add_argument(
        "--shard",
        metavar="I/N",
        help="with --output-dir: list only the regions of shard I of N (run N processes, I = 0..N-1)",
    )
    out.add_argument("--summary", metavar="FILE", type=Path, help="also write the summary as JSON to FILE")
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (display, or log lines when not on a terminal)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress, no summary table: errors only")
    out.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="debug logging (which credentials are used, masked)",
    )
