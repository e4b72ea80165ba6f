"""Request ids and query decoding, and the package layout: imports and ``__all__``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import scanner.simulator
from scanner.simulator.app import RequestIds
from scanner.simulator.pages import parse_query, with_request_id

SIMULATOR = Path(scanner.simulator.__file__).parent


def test_request_ids() -> None:
    ids = RequestIds(5)
    first, second = ids.next(), ids.next()
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}", first)
    assert first != second
    assert RequestIds(5).next() == first
    assert RequestIds(6).next() != first
    assert with_request_id(b'{"A":1}', first) == b'{"RequestId":"' + first.encode() + b'","A":1}'


def test_parse_query_matches_the_signature_decoding() -> None:
    assert parse_query("Filter=a+b%2Bc&IsSpot=True&Empty=&Filter=last") == {
        "Filter": "last",
        "IsSpot": "True",
        "Empty": "",
    }
    assert parse_query("") == {}


# --- layout -------------------------------------------------------------------------------------

ALLOWED = ("scanner.eas", "scanner.errors", "scanner.clock", "scanner.lifecycle", "scanner.simulator")


def simulator_modules() -> list[str]:
    # __main__ is left out: importing it runs the server.
    return [
        f"scanner.simulator.{m.name}" for m in pkgutil.iter_modules([str(SIMULATOR)]) if m.name != "__main__"
    ]


@pytest.mark.parametrize("path", sorted(SIMULATOR.glob("*.py")), ids=lambda p: p.name)
def test_the_simulator_imports_only_the_protocol_layer(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name == "scanner" or name.startswith("scanner."):
                assert name.startswith(ALLOWED), f"{path.name} imports {name}"


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("module_name", ["scanner.simulator", *simulator_modules()])
def test_every_module_has_a_sorted_complete_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert list(exported) == sorted(exported, key=isort_style)
    for name in exported:
        assert hasattr(module, name), name
