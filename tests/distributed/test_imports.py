"""Ray is an optional extra: the base install, the CLI and scanner.distributed itself never import it."""

from __future__ import annotations

import subprocess
import sys

import scanner.distributed


def test_scanner_and_the_cli_do_not_import_ray() -> None:
    code = (
        "import sys, scanner, scanner.cli, scanner.cli.main, scanner.distributed; "
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_names_exist_once() -> None:
    names = scanner.distributed.__all__  # in ruff's RUF022 order (constants, classes, functions)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(scanner.distributed, name), name
