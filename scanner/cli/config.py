"""Flags -> configuration: the checks that need several flags or the file system, then the library's
config objects (``Concurrency``, ``Timeouts``, ``RetryPolicy``, ``RateLimit``) built from them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from scanner import (
    Account,
    Concurrency,
    ConfigError,
    ConnectionLimits,
    Organization,
    RateLimit,
    RetryPolicy,
    Timeouts,
)
from scanner.cli.args import ORG_PRESETS
from scanner.cli.engine import EngineOptions, engine_options
from scanner.endpoints import EndpointResolver
from scanner.output.files import OS_FILE_SYSTEM, FileSystem, check_writable
from scanner.query import MAX_PAGE_SIZE
from scanner.scandir.formats import check_format
from scanner.scandir.params import ScanParams
from scanner.scandir.shard import Shard

__all__ = ["ScanConfig", "config_from"]


class ScannerOptions(TypedDict):
    """The ``Scanner`` arguments that come from flags alone (typed, so mypy checks them at the call)."""

    endpoint_type: str
    concurrency: Concurrency
    rate_limit: RateLimit
    retry: RetryPolicy
    timeouts: Timeouts
    connection_limits: ConnectionLimits
    page_size: int


@dataclass
class ScanConfig:
    """The validated form of ``eas-scan scan``'s flags."""

    regions: list[str] | str | None
    services: list[str] | None
    service_filter: str | None
    endpoints: dict[str, str]
    endpoint_type: str
    profile: str | None
    simulate: str | None
    instance_filters: dict[str, Any]
    page_size: int
    concurrency: Concurrency
    rate_limit: RateLimit
    retry: RetryPolicy
    timeouts: Timeouts
    connection_limits: ConnectionLimits
    output: Path | None
    fmt: str
    summary: Path | None
    progress: bool
    quiet: bool
    verbose: int
    #: Several accounts (--org, --accounts, --simulate org-*): what to scan, or None for one account.
    accounts: Organization | tuple[Account, ...] | None = None
    #: Scanner keywords of a multi-account scan given on the command line (role_duration, ...).
    account_options: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_account(self) -> bool:
        return self.accounts is not None

    #: --output-dir: a scan directory instead of one output (``-o`` or stdout).
    output_dir: Path | None = None
    resume: bool = False
    shard: Shard | None = None
    #: --engine (local, or ray with --ray-address and --workers).
    engine: EngineOptions = field(default_factory=EngineOptions)

    def scanner_options(self) -> ScannerOptions:
        """``Scanner``'s keyword arguments these flags set, whoever builds it (either engine)."""
        return {
            "endpoint_type": self.endpoint_type,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "retry": self.retry,
            "timeouts": self.timeouts,
            "connection_limits": self.connection_limits,
            "page_size": self.page_size,
        }

    def scan_params(self) -> ScanParams:
        """What makes two runs parts of one scan directory (a resume refuses when it differs)."""
        filters: dict[str, Any] = dict(self.instance_filters)
        if self.services is not None:
            filters["services"] = sorted(set(self.services))
        if self.service_filter is not None:
            filters["service_filter"] = self.service_filter
        regions = tuple(self.regions) if isinstance(self.regions, list) else None
        accounts: tuple[str, ...] | str | None = None
        if isinstance(self.accounts, Organization):
            # Every member the directory lists (its folder, and who is in or out, are filters).
            accounts = "organization"
            for name in ("folder", "include", "exclude"):
                value = getattr(self.accounts, name)
                if value:
                    filters[f"org_{name}"] = value if isinstance(value, str) else sorted(value)
        elif self.accounts is not None:
            accounts = tuple(account.id for account in self.accounts)
        return ScanParams(format=self.fmt, filters=filters, regions=regions, accounts=accounts)


#: ListServiceInstances parameters, by the name of the flag's attribute.
_INSTANCE_FILTERS = (
    "filter",
    "instance_status",
    "instance_type",
    "instance_ip",
    "instance_name",
    "host_ip",
    "resource_type",
    "role",
    "is_spot",
    "sort",
    "order",
)


def config_from(args: argparse.Namespace, *, fs: FileSystem = OS_FILE_SYSTEM) -> ScanConfig:
    """The configuration ``args`` asks for; a ``ConfigError`` (exit 2) for what cannot work together."""
    if args.simulate and args.endpoint:
        raise ConfigError(
            "--simulate and --endpoint cannot be combined: the simulator brings its own endpoints"
        )
    if args.simulate and args.profile:
        raise ConfigError("--simulate and --profile cannot be combined: the simulator has its own keys")
    endpoints = _endpoints(args.endpoint)
    if args.page_size > MAX_PAGE_SIZE:
        raise ConfigError(
            f"--page-size must be at most {MAX_PAGE_SIZE} (the API's cap), got {args.page_size}"
        )
    _check_output(args)
    engine = engine_options(args)
    _check_paths(args.output, args.summary, fs)
    filters = {name: getattr(args, name) for name in _INSTANCE_FILTERS}
    accounts, account_options = _accounts(args)
    return ScanConfig(
        regions=args.regions,
        services=args.services,
        service_filter=args.service_filter,
        endpoints=endpoints,
        endpoint_type=args.endpoint_type,
        profile=args.profile,
        simulate=args.simulate,
        instance_filters={k: v for k, v in filters.items() if v is not None},
        page_size=args.page_size,
        concurrency=_concurrency(args.concurrency),
        rate_limit=RateLimit(requests_per_second=args.rate_limit),
        retry=RetryPolicy(max_attempts=args.max_attempts) if args.max_attempts else RetryPolicy(),
        timeouts=_timeouts(args.timeout),
        connection_limits=_connection_limits(args.max_response_mib),
        output=args.output,
        fmt=args.format,
        summary=args.summary,
        progress=not (args.no_progress or args.quiet),
        quiet=args.quiet,
        verbose=args.verbose,
        output_dir=args.output_dir,
        resume=args.resume,
        shard=None if args.shard is None else Shard.parse(args.shard),
        accounts=accounts,
        account_options=account_options,
        engine=engine,
    )


def _check_output(args: argparse.Namespace) -> None:
    """Where the records go: -o or stdout, or a scan directory; and in which format."""
    if args.output_dir is not None and args.output is not None:
        raise ConfigError("give -o FILE or --output-dir DIR, not both")
    if args.output_dir is None:
        for flag, given in (("--resume", args.resume), ("--shard", args.shard is not None)):
            if given:
                raise ConfigError(f"{flag} needs --output-dir DIR (it works on a scan directory)")
        if args.format == "parquet" and args.output is None:
            raise ConfigError("--format parquet is not written to stdout: give -o FILE or --output-dir DIR")
    if args.shard is not None:
        Shard.parse(args.shard)
    check_format(args.format)  # Parquet without pyarrow: one line naming the extra, before any request


#: Flags of --org only, and flags of any multi-account scan, by their attribute.
_ORG_FLAGS = (("org_folder", "--org-folder"), ("include_accounts", "--include-accounts"),
              ("exclude_accounts", "--exclude-accounts"))  # fmt: skip
_ACCOUNT_FLAGS = (
    ("role_name", "--role-name"),
    ("external_id", "--external-id"),
    ("role_session_name", "--role-session-name"),
    ("role_duration", "--role-duration"),
    ("sts_endpoint", "--sts-endpoint"),
    ("resourcemanager_endpoint", "--resourcemanager-endpoint"),
    ("concurrency_per_account", "--concurrency-per-account"),
    ("accounts_in_flight", "--accounts-in-flight"),
)
_MIN_DURATION, _MAX_DURATION = 900, 43200


def _accounts(args: argparse.Namespace) -> tuple[Organization | tuple[Account, ...] | None, dict[str, Any]]:
    """--org / --accounts / --simulate org-* and their flags: what to scan, and the Scanner options."""
    simulated_org = args.simulate in ORG_PRESETS
    if args.org and args.accounts is not None:
        raise ConfigError(
            "--org and --accounts cannot be combined: scan the directory, or the file's accounts"
        )
    if args.simulate and not simulated_org and (args.org or args.accounts is not None):
        raise ConfigError(
            f"--simulate {args.simulate} is one account: use --simulate org-small for an organisation"
        )
    if simulated_org and args.accounts is not None:
        raise ConfigError(
            f"--simulate {args.simulate} scans the simulated organisation as --org does: drop --accounts"
        )
    org = args.org or simulated_org
    if not org:
        for name, flag in _ORG_FLAGS:
            if getattr(args, name) is not None:
                raise ConfigError(f"{flag} needs --org (it selects members of the Resource Directory)")
    if not org and args.accounts is None:
        for name, flag in _ACCOUNT_FLAGS:
            if getattr(args, name) is not None:
                raise ConfigError(f"{flag} needs --org or --accounts (it is about scans of several accounts)")
        return None, {}
    if simulated_org and (args.sts_endpoint or args.resourcemanager_endpoint):
        raise ConfigError(
            "--simulate and --sts-endpoint/--resourcemanager-endpoint cannot be combined: "
            "the simulator brings its own endpoints"
        )
    duration = args.role_duration
    if duration is not None and not _MIN_DURATION <= duration <= _MAX_DURATION:
        raise ConfigError(
            f"--role-duration must be from {_MIN_DURATION} to {_MAX_DURATION} seconds "
            f"(and at most the role's maximum session duration), got {duration}"
        )
    accounts: Organization | tuple[Account, ...]
    try:
        if org:
            accounts = Organization(
                role_name=args.role_name or Organization().role_name,
                folder=args.org_folder,
                include=args.include_accounts,
                exclude=args.exclude_accounts or (),
                external_id=args.external_id,
            )
        else:
            accounts = Account.load(args.accounts, role_name=args.role_name, external_id=args.external_id)
    except ConfigError as exc:
        if not org:
            raise  # it names the file, the line and the fix
        raise ConfigError(f"{exc} (check --role-name, --external-id and the account ids given)") from None
    options = {
        name: getattr(args, name)
        for name in (
            "role_session_name",
            "role_duration",
            "sts_endpoint",
            "resourcemanager_endpoint",
            "concurrency_per_account",
            "accounts_in_flight",
        )
        if getattr(args, name) is not None
    }
    return accounts, options


def _endpoints(pairs: list[tuple[str, str]]) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for region, url in pairs:
        if region in endpoints:
            raise ConfigError(f"--endpoint gives {region} twice")
        endpoints[region] = url
        try:
            EndpointResolver({region: url})
        except ConfigError as exc:
            raise ConfigError(f"--endpoint {region}={url}: {exc}") from None
    return endpoints


def _concurrency(total: int | None) -> Concurrency:
    """``--concurrency N``: N in flight in all, and no per-region or per-listing bound above N."""
    defaults = Concurrency()
    if total is None:
        return defaults
    return Concurrency(
        total=total,
        per_region=min(defaults.per_region, total),
        pages_per_listing=min(defaults.pages_per_listing, total),
        services_per_region=defaults.services_per_region,
    )


def _connection_limits(max_response_mib: int | None) -> ConnectionLimits:
    """``--max-response-mib N``: only the body cap; the pool keeps following ``--concurrency``."""
    if max_response_mib is None:
        return ConnectionLimits()
    return ConnectionLimits(max_response_bytes=max_response_mib * 2**20)


def _timeouts(total: float | None) -> Timeouts:
    """``--timeout SECONDS``: the whole request, and no connect or read timeout above it."""
    defaults = Timeouts()
    if total is None:
        return defaults
    return Timeouts(connect=min(defaults.connect, total), read=min(defaults.read, total), total=total)


def _check_paths(output: Path | None, summary: Path | None, fs: FileSystem) -> None:
    if output is not None:
        check_writable(output, fs=fs)
    if summary is not None:
        check_writable(summary, what="summary", flag="--summary", fs=fs)
        if output is not None and summary.resolve() == output.resolve():
            raise ConfigError(
                f"--summary and -o both name {summary}: the summary would replace the records; "
                "choose another --summary path"
            )
