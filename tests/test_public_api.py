"""The public names: exported once, sorted, and each defined where it claims to be."""

from __future__ import annotations

import scanner


def test_all_is_sorted_and_complete() -> None:
    names = [name for name in scanner.__all__ if name != "__version__"]
    assert names == sorted(names)
    for name in scanner.__all__:
        assert hasattr(scanner, name), name


def test_the_contract_names_exist() -> None:
    for name in ("Scanner", "StaticCredentials", "ScanStream", "ScanSummary", "Concurrency", "RateLimit",
                 "RetryPolicy", "Timeouts", "InstanceQuery"):  # fmt: skip
        assert name in scanner.__all__


def test_version_is_a_string() -> None:
    assert isinstance(scanner.__version__, str)
    assert scanner.__version__
