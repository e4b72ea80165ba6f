"""The exit code: one pure function of how the run ended.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      complete: every region and service was listed, and the output saved
3      finished, but incomplete: some region or service failed after retries (see the summary)
2      bad usage or configuration, found before any request was sent
1      fatal: no credentials, every region refused, the output or the summary not saved
130    interrupted (Ctrl-C, SIGTERM): the records read so far saved, whole lines only
=====  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_FATAL",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Outcome",
    "exit_code",
]

EXIT_COMPLETE: Final = 0
EXIT_FATAL: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCOMPLETE: Final = 3
EXIT_INTERRUPTED: Final = 130


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended, as far as its exit code goes."""

    #: A flag, a path or the configuration was refused (before any request).
    usage_error: bool = False
    #: The scan as a whole failed: no credentials, every region refused, the output closed mid-scan.
    fatal: bool = False
    #: A signal (or Ctrl-C) asked the run to stop, before the exit code was decided.
    interrupted: bool = False
    #: Every region and service was listed.
    complete: bool = False
    #: The records could not be saved at the end (the last flush, the fsync, the rename).
    records_lost: bool = False
    #: The --summary file could not be written.
    summary_lost: bool = False


def exit_code(outcome: Outcome) -> int:
    """The exit code: a run that failed in its own way keeps that code; a file that could not be
    saved makes an otherwise finished run fatal (1), but not an interrupted one (130)."""
    if outcome.usage_error:
        return EXIT_USAGE
    if outcome.fatal:
        return EXIT_FATAL
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.records_lost or outcome.summary_lost:
        return EXIT_FATAL
    return EXIT_COMPLETE if outcome.complete else EXIT_INCOMPLETE
