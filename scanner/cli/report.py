"""What a run tells: log lines and errors on stderr, the summary table, the summary as JSON.

On a terminal stderr has rich's width; elsewhere (a log file, a pipe, journald) it has none, and
server text is collapsed onto one line, so that each summary line and each failure is one line
that grep finds.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson
from rich.console import Console

from scanner import ScanSummary
from scanner.cli.outcome import EXIT_INCOMPLETE, EXIT_INTERRUPTED
from scanner.output.progress import one_line, render_summary

__all__ = [
    "UNBOUNDED_WIDTH",
    "logging_to_stderr",
    "print_error",
    "report",
    "stderr_console",
    "summary_document",
]

#: The width of stderr when it is not a terminal: in effect none, so rich never wraps a line.
UNBOUNDED_WIDTH: Final = 1 << 20


def stderr_console() -> Console:
    """stderr for people: rich's own width on a terminal, no width elsewhere."""
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=UNBOUNDED_WIDTH)
    return console


def print_error(console: Console, message: str) -> None:
    """``eas-scan: error: MESSAGE`` on one line."""
    # stderr itself may not take it (a full disk under `2>>log`): the exit code still tells.
    with contextlib.suppress(OSError):
        console.print(f"eas-scan: error: {one_line(message)}", highlight=False, markup=False, soft_wrap=True)


def report(
    console: Console,
    summary: ScanSummary | None,
    code: int,
    *,
    quiet: bool,
    summary_path: Path | None,
) -> None:
    """The summary table on stderr; with --quiet, one line if the scan is incomplete.

    ``summary_path`` is the --summary file, if it was written.
    """
    with contextlib.suppress(OSError):  # an unwritable stderr, as in print_error()
        if summary is not None and not quiet:
            render_summary(summary, console)
        elif code == EXIT_INCOMPLETE and summary is not None:
            # --quiet keeps errors: a cron job's log should still say why the inventory is partial.
            failures = summary.failures
            first = failures[0] if failures else None
            console.print(
                f"eas-scan: incomplete: {len(failures)} failure(s)"
                + (one_line(f", first {_where(first)}: {first.code}") if first else "")
                + (f" (see {summary_path})" if summary_path else ""),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def _where(failure: Any) -> str:
    """``region/service`` (``-`` for a region's own), after the account in multi-account scans."""
    where = f"{failure.region}/{failure.service or '-'}" if failure.region is not None else "-"
    return f"{failure.account}/{where}" if failure.account is not None else where


def summary_document(summary: ScanSummary | None, code: int, error: str | None) -> bytes:
    """The --summary JSON: the library's summary, plus ``exit_code`` and the ``error`` line if any."""
    document: dict[str, Any] = (
        summary.to_dict()
        if summary is not None
        else {"complete": False, "records": 0, "duration_s": 0.0, "requests": 0, "retries": 0,
              "throttled": 0, "regions": {}, "failures": []}
    )  # fmt: skip
    document["exit_code"] = code
    if error is not None:
        document["error"] = error
    if code == EXIT_INTERRUPTED:
        document["complete"] = False
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


class _OneLineFormatter(logging.Formatter):
    """A log record on one line, whatever its message holds (a server's text may hold line breaks)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


@contextlib.contextmanager
def logging_to_stderr(*, quiet: bool, verbose: int) -> Iterator[None]:
    """Log to stderr while the block runs: warnings with --quiet, progress lines by default, debug
    with -v; then the ``scanner`` logger is put back as it was (main may run in-process)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("scanner")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    try:
        yield
    finally:
        root.handlers[:], root.level, root.propagate = saved
