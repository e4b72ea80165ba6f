"""The public names: exactly the documented API, sorted, and each one usable as documented.

The list below is the README's "The library" section; a name added to or dropped from
``scanner.__all__`` must be added to or dropped from both (httpx's test_exported_members idea).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from enum import StrEnum
from pathlib import Path

import pytest

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


# The documented public modules (named in ``scanner``'s docstring and the README's library section).
# Every other module of the package is internal: it may change without notice.
PUBLIC_MODULES = [
    "scanner.client",
    "scanner.endpoints",
    "scanner.errors",
    "scanner.events",
    "scanner.query",
    "scanner.summary",
    "scanner.testing",
]
#: The modules that only re-export names defined in internal modules: nothing else is public there.
REEXPORT_MODULES = ["scanner.endpoints", "scanner.events", "scanner.query", "scanner.summary"]
#: The front ends at the command line's own layer: the CLI may use them as well as the public API.
FRONT_ENDS = ["scanner.cli", "scanner.distributed", "scanner.output", "scanner.scandir", "scanner.simulator"]

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "scanner" / "cli"

#: Internal imports of the command line still to be switched to the public modules, as
#: (file, module); the test fails if an entry is stale, so the list can only shrink. Empty now.
PENDING: set[tuple[str, str]] = set()


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's (RUF022) order of ``__all__``: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_documents_itself_and_its_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring saying what it is for"
    assert module.__doc__.strip()
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert getattr(module, attr, None) is not None, f"{name}.{attr} does not resolve"


@pytest.mark.parametrize("name", REEXPORT_MODULES)
def test_reexport_module_exports_exactly_its_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not inspect.ismodule(value) and attr != "annotations"
    }
    assert public == set(module.__all__)


def test_public_modules_are_the_documented_ones() -> None:
    assert scanner.__doc__ is not None
    named_in_docstring = set(re.findall(r"``(scanner\.[a-z_]+)``", scanner.__doc__))
    assert named_in_docstring == set(PUBLIC_MODULES)
    readme = (ROOT / "README.md").read_text()
    library = readme.split("## The library", 1)[1].split("\n## ", 1)[0]
    for name in PUBLIC_MODULES:
        assert f"`{name}`" in library, f"the README's library section does not name {name}"


def test_the_cli_needs_no_summary_or_event_type_from_an_internal_module() -> None:
    """The names the command line used to take from internals are all public now."""
    from scanner.endpoints import EndpointResolver, validate_region
    from scanner.errors import unwrap_group
    from scanner.events import UnitEnded, UnitsPlanned
    from scanner.query import MAX_PAGE_SIZE, InstanceSort, Order, ResourceType, Role
    from scanner.summary import Failure, RegionSummary

    assert MAX_PAGE_SIZE == 100  # the API's cap, which --page-size and Consistency enforce
    assert all(issubclass(enum, StrEnum) for enum in (InstanceSort, Order, ResourceType, Role))
    assert all(callable(x) for x in (EndpointResolver, validate_region, unwrap_group))
    assert all(dataclasses.is_dataclass(x) for x in (UnitEnded, UnitsPlanned, Failure, RegionSummary))


def _allowed(module: str) -> bool:
    if module == "scanner" or module in PUBLIC_MODULES:
        return True
    return any(module == front or module.startswith(front + ".") for front in FRONT_ENDS)


def _scanner_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``scanner.*`` module the file imports (at any depth), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "scanner"
            )
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to scanner.cli
                base = ".".join(["scanner", "cli"][: 3 - node.level])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "scanner":
                continue
            if module == "scanner":
                # ``from scanner import X``: X is a public name, or a module (then it is checked as one)
                for alias in node.names:
                    if alias.name not in scanner.__all__:
                        found.append((node.lineno, f"scanner.{alias.name}"))
                    else:
                        found.append((node.lineno, "scanner"))
            else:
                found.append((node.lineno, module))
    return found


def _cli_violations() -> set[tuple[str, str]]:
    return {
        (path.name, module)
        for path in sorted(CLI.glob("*.py"))
        for _, module in _scanner_imports(path)
        if not _allowed(module)
    }


def test_the_cli_uses_only_the_public_api() -> None:
    """Issue 12: the command line is a client of the library like any other, plus its sibling front
    ends; a module it needs that is not public is a gap in the public API, to be filled there."""
    files = sorted(path.name for path in CLI.glob("*.py"))
    assert {"args.py", "config.py", "main.py", "scan.py", "ray_scan.py"} <= set(files)  # the check sees them
    violations = _cli_violations()
    assert violations - PENDING == set(), "internal modules imported by the CLI"
    assert PENDING - violations == set(), "PENDING lists imports that are gone: remove them from it"


def test_the_import_check_catches_an_internal_import(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text(
        "from scanner import Scanner, testing\n"
        "from scanner.engine.stats import Failure\n"
        "def f():\n"
        "    import scanner.eas.params\n"
        "    from scanner.events import UnitEnded\n"
        "    from . import scan\n"
        "    from ..engine import events\n"
    )
    modules = [module for _, module in _scanner_imports(source)]
    assert modules == [
        "scanner",
        "scanner.testing",
        "scanner.engine.stats",
        "scanner.eas.params",
        "scanner.events",
        "scanner.cli",
        "scanner.engine",
    ]
    assert [module for module in modules if not _allowed(module)] == [
        "scanner.engine.stats",
        "scanner.eas.params",
        "scanner.engine",
    ]
