"""``eas-scan status DIR...`` and ``eas-scan diff OLD NEW``: reading scan directories.

``status`` prints the parts of a scan (one directory, or the directories of its shards) as a table,
or as JSON with ``--json``; exit 0 when the scan is complete, 3 when not, 2 when a path is not a scan
directory. ``diff`` writes one JSON line per change (to stdout, or to ``-o FILE`` committed whole),
the counts to ``--summary FILE``, and one line on stderr; exit 0 when everything was compared, 3 when
some region was not (incomplete in either scan), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import orjson
from rich.console import Console

from scanner import ConfigError
from scanner.cli.outcome import EXIT_FATAL, EXIT_USAGE
from scanner.cli.report import print_error
from scanner.output.files import OutputFile, records_error
from scanner.scandir import ScanDirectory, combined_status, diff_scans, status_exit_code, status_table

__all__ = ["diff_command", "scan_paths", "status_command"]


def scan_paths(text: str) -> str | list[str]:
    """One side of a diff: a path, or ``DIR1,DIR2,...`` (the shards' directories of one scan).

    A path that exists is taken whole, even with a comma in its name.
    """
    if "," not in text or Path(text).exists():
        return text
    return [part for part in text.split(",") if part]


def status_command(args: argparse.Namespace, err: Console) -> int:
    try:
        status = combined_status([ScanDirectory.open(path) for path in args.directories])
    except ConfigError as exc:
        print_error(err, str(exc))
        return EXIT_USAGE
    out = sys.stdout
    if args.json:
        document = {key: status[key] for key in ("complete", "records", "parts")}
        document.update((key, value) for key, value in status.items() if key not in document)
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode())
    else:
        out.write("\n".join(status_table(status)) + "\n")
    out.flush()
    return status_exit_code(status)


def diff_command(args: argparse.Namespace, err: Console) -> int:
    output: Path | None = args.output
    summary_path: Path | None = args.summary
    if output is not None and summary_path is not None and output.resolve() == summary_path.resolve():
        print_error(err, f"--summary and -o both name {output}: choose another --summary path")
        return EXIT_USAGE
    try:
        changes = OutputFile(output, stream=sys.stdout.buffer)
    except (ConfigError, OSError) as exc:
        print_error(err, str(exc))
        return EXIT_USAGE
    try:
        summary = diff_scans(scan_paths(args.old), scan_paths(args.new), changes.write)
    except ConfigError as exc:
        changes.discard()
        print_error(err, str(exc))
        return EXIT_USAGE
    except OSError as exc:
        changes.discard()
        print_error(err, records_error(output, exc, "the diff was not saved"))
        return EXIT_FATAL
    try:
        changes.commit()
    except OSError as exc:
        changes.discard()
        print_error(err, records_error(output, exc, "the diff was not saved"))
        return EXIT_FATAL
    document = summary.to_json()
    if summary_path is not None:
        try:
            file = OutputFile(summary_path, what="summary", flag="--summary")
            file.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
            file.commit()
        except (ConfigError, OSError) as exc:
            print_error(err, f"cannot write the summary to {summary_path}: {exc}")
            return EXIT_FATAL
    line = (
        f"diff: {document['added']} added, {document['removed']} removed, {document['changed']} changed, "
        f"{document['unchanged']} unchanged"
    )
    if summary.not_compared:
        names = ", ".join(
            f"{unit['account']}/{unit['region']}" if unit["account"] else unit["region"]
            for unit in summary.not_compared
        )
        line += f"; NOT compared (incomplete in a scan): {names}"
    with contextlib.suppress(OSError):
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    return summary.exit_code
