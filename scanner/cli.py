"""The ``eas-scan`` command line. (Placeholder until the CLI issue lands.)"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from scanner import __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        print(f"eas-scan {__version__}")
        return 0
    print("eas-scan: the scan and simulate commands are not built yet", file=sys.stderr)
    return 2
