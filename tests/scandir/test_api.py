from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import scanner.scandir

ROOT = Path(__file__).resolve().parents[2]


def test_public_names_are_exported() -> None:
    names = scanner.scandir.__all__  # ruff (RUF022) keeps it sorted
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(scanner.scandir, name), name


def test_jsonl_and_csv_scan_directories_never_import_pyarrow() -> None:
    code = (
        "import sys, scanner.scandir, scanner.scandir.diff\n"
        "from scanner.scandir import ScanParams\n"
        "ScanParams(format='csv')\n"
        "print('pyarrow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.strip() == "False"
