"""``eas-scan``: batch inventory of PAI-EAS instances, for people and for cron.

``eas-scan scan`` streams every instance as JSON Lines (or CSV) to stdout or a file, shows progress
on a terminal, prints a summary, and exits 0 (complete), 3 (finished, incomplete), 2 (bad usage or
configuration, before any request), 1 (fatal: no credentials, every region refused, the output
could not be written) or 130 (interrupted). With ``--output-dir`` it writes a scan directory instead
(``scanner.scandir``: a part per region committed as each ends, ``--resume``, ``--shard I/N``).
``eas-scan status`` and ``eas-scan diff`` read scan directories; ``eas-scan simulate`` runs the
embedded EAS simulator.

One job per module: ``args`` (the flags), ``config`` (flags -> configuration), ``scan`` (running
it), ``signals`` (SIGINT/SIGTERM), ``outcome`` (the exit code), ``report`` (what stderr and the
summary file say), ``dirs`` (status and diff) and ``main`` (the sequence). The output files are
``scanner.output.files``.
"""

from scanner.cli.args import build_parser
from scanner.cli.main import main, run_scan
from scanner.cli.outcome import EXIT_COMPLETE, EXIT_FATAL, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_FATAL",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "run_scan",
]
