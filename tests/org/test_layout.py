"""scanner.org: its public names, and that it sits below the engine (imports no engine, CLI, output)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scanner.org

ORG = Path(scanner.org.__file__).parent
ALLOWED = (
    "scanner.client",
    "scanner.clock",
    "scanner.eas",
    "scanner.errors",
    "scanner.org",
    "scanner.validation",
)


def test_all_names_exist_once() -> None:
    assert len(set(scanner.org.__all__)) == len(scanner.org.__all__)
    for name in scanner.org.__all__:
        assert hasattr(scanner.org, name), name


@pytest.mark.parametrize("path", sorted(ORG.glob("*.py")), ids=lambda p: p.name)
def test_org_imports_only_the_layers_below_the_engine(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("scanner"):
                assert name.startswith(ALLOWED), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted(ORG.glob("*.py")), ids=lambda p: p.name)
def test_nothing_here_imports_aiohttp(path: Path) -> None:
    # Requests go through the client's transport seam (scanner.client.http).
    assert "aiohttp" not in path.read_text()
