"""``python -m scanner``: the same as the ``eas-scan`` command."""

from scanner.cli import main

raise SystemExit(main())
