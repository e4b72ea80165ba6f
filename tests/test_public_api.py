"""The public names: exactly the documented API, sorted, and each one usable as documented.

The list below is the README's "The library" section; a name added to or dropped from
``scanner.__all__`` must be added to or dropped from both (httpx's test_exported_members idea).
"""

from __future__ import annotations

import dataclasses
import inspect

import scanner

DOCUMENTED = [
    # the scan
    "Scanner",
    "ScanStream",
    "ScanSummary",
    # what Scanner(...) and scan() accept
    "Concurrency",
    "ConnectionLimits",
    "Consistency",
    "InstanceQuery",
    "RateLimit",
    "RetryPolicy",
    "ServiceQuery",
    "Timeouts",
    # several accounts in one run (Scanner(accounts=...))
    "Organization",
    "Account",
    # credentials
    "Credentials",
    "CredentialsProvider",
    "DefaultCredentials",
    "StaticCredentials",
    # the errors worth catching (the whole tree is in scanner.errors)
    "ScannerError",
    "ConfigError",
    "CredentialsError",
    "ScanFailedError",
    "RequestError",
    "ApiError",
    # process tuning, and the version
    "batch_gc",
    "__version__",
]


def test_all_is_exactly_the_documented_api() -> None:
    assert sorted(scanner.__all__) == sorted(DOCUMENTED)
    assert len(scanner.__all__) <= 25  # issue 12: what a user needs, at most 25


def test_all_is_sorted_and_complete() -> None:
    names = [name for name in scanner.__all__ if name != "__version__"]
    assert names == sorted(names)
    for name in scanner.__all__:
        assert hasattr(scanner, name), name


def test_no_other_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(scanner).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public <= set(scanner.__all__)


def test_the_contract_names_exist() -> None:
    for name in ("Scanner", "StaticCredentials", "ScanStream", "ScanSummary", "Concurrency", "RateLimit",
                 "RetryPolicy", "Timeouts", "InstanceQuery"):  # fmt: skip
        assert name in scanner.__all__


def test_every_exported_config_type_is_accepted_by_the_scanner() -> None:
    accepted = {param.annotation for param in inspect.signature(scanner.Scanner.__init__).parameters.values()}
    accepted_text = " ".join(str(annotation) for annotation in accepted)
    configs = [
        name
        for name in scanner.__all__
        if dataclasses.is_dataclass(getattr(scanner, name))
        and name not in ("Credentials", "ScanSummary", "ScanStatistics")  # values, not configuration
    ]
    scan_accepts = " ".join(
        str(p.annotation) for p in inspect.signature(scanner.Scanner.scan).parameters.values()
    )
    for name in configs:
        assert name in accepted_text or name in scan_accepts, name


def test_version_is_a_string() -> None:
    assert isinstance(scanner.__version__, str)
    assert scanner.__version__
