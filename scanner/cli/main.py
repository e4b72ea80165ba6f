"""``eas-scan``'s entry point: flags -> configuration -> files -> scan -> saved files -> exit code."""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console

from scanner import ConfigError, ScanSummary
from scanner.cli.args import build_parser
from scanner.cli.config import ScanConfig, config_from
from scanner.cli.outcome import EXIT_USAGE, Outcome, exit_code
from scanner.cli.report import logging_to_stderr, print_error, report, stderr_console, summary_document
from scanner.cli.scan import DirectoryTarget, ScanResult, run
from scanner.cli.signals import Interrupts
from scanner.output.files import OS_FILE_SYSTEM, FileSystem, RunFiles, Saved
from scanner.scandir import ScanDirectory

__all__ = ["main", "run_scan"]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulate"]:
        from scanner.simulator.standalone import main as simulate_main

        try:
            return simulate_main(args_list[1:], prog="eas-scan simulate")
        except SystemExit as exit_:  # --help, or a bad flag (argparse has printed why)
            return int(exit_.code or 0)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command in ("status", "diff"):
        from scanner.cli.dirs import diff_command, status_command

        command = status_command if args.command == "status" else diff_command
        return command(args, stderr_console())
    # Installed until the last line is out: a signal while stderr is flushed is absorbed too.
    with Interrupts().installed() as interrupts:
        code = _scan_command(args, None, stderr_console(), OS_FILE_SYSTEM, interrupts)
        try:
            if sys.stderr is not None:
                sys.stderr.flush()  # the log lines still buffered
        except OSError:  # a full disk under `2>>log`: the records and the exit code still stand
            _silence(sys.stderr)
    return code


def run_scan(
    args: argparse.Namespace,
    *,
    stdout: IO[bytes] | None = None,
    stderr: Console | None = None,
    fs: FileSystem = OS_FILE_SYSTEM,
) -> int:
    """``eas-scan scan`` with parsed ``args``; the exit code.

    ``stdout`` takes the records when there is no -o (default: the process's stdout), ``stderr`` the
    messages, and ``fs`` does the file operations (tests pass one that fails on demand).
    """
    with Interrupts().installed() as interrupts:
        return _scan_command(args, stdout, stderr or stderr_console(), fs, interrupts)


def _scan_command(
    args: argparse.Namespace,
    stdout: IO[bytes] | None,
    err: Console,
    fs: FileSystem,
    interrupts: Interrupts,
) -> int:
    try:
        config = config_from(args, fs=fs)
    except ConfigError as exc:
        print_error(err, str(exc))
        return EXIT_USAGE
    with logging_to_stderr(quiet=config.quiet, verbose=config.verbose):
        if config.output_dir is not None:
            return _run_into_directory(config, err, fs, interrupts)
        return _run(config, stdout, err, fs, interrupts)


def _open_directory(config: ScanConfig) -> DirectoryTarget:
    """The scan directory of --output-dir, created or joined; with --resume, cleaned and planned.

    A ``ConfigError`` (exit 2, before any request) when it holds a scan of other parameters.
    """
    assert config.output_dir is not None
    params = config.scan_params()
    directory = ScanDirectory.create_or_open(config.output_dir, params)
    if not config.resume:
        return DirectoryTarget(directory)
    plan = directory.resume_plan(params)
    log = logging.getLogger("scanner.cli")
    log.info(
        "resume %s: %d complete region(s) kept (%d records), %d incomplete (%d of them damaged: "
        "complete entries whose part is gone or cut), %d missing, "
        "%d being written by another process, %d leftover file(s) removed",
        directory.path,
        len(plan.complete),
        plan.records,
        len(plan.incomplete),
        len(plan.damaged),
        len(plan.missing),
        len(plan.busy),
        len(plan.removed),
    )
    return DirectoryTarget(directory, plan)


def _run_into_directory(config: ScanConfig, err: Console, fs: FileSystem, interrupts: Interrupts) -> int:
    """``--output-dir``: each region's part committed as it ends; then the summary and exit code."""
    try:
        target = _open_directory(config)
        # The records go to the directory's parts; this transaction only carries --summary.
        files = RunFiles(None, config.summary, stdout=io.BytesIO(), fs=fs)
    except ConfigError as exc:
        print_error(err, str(exc))
        return EXIT_USAGE
    interrupts.track(files)
    result = run(config, target, err, interrupts)
    saved = Saved(written=not (result.usage_error or result.fatal))
    interrupts.report()
    outcome = _outcome(result, saved, interrupted=result.interrupted or bool(interrupts.received))
    outcome = dataclasses.replace(outcome, records_lost=False)
    code = exit_code(outcome)
    summary_error = files.save_summary(
        summary_document(result.summary, code, result.error), records_written=saved.written
    )
    final = exit_code(dataclasses.replace(outcome, summary_lost=summary_error is not None))
    written_summary = config.summary if summary_error is None else None
    report(err, result.summary, code, quiet=config.quiet, summary_path=written_summary)
    for message in (result.error, summary_error):
        if message is not None:
            print_error(err, message)
    return final


def _run(
    config: ScanConfig, stdout: IO[bytes] | None, err: Console, fs: FileSystem, interrupts: Interrupts
) -> int:
    real_stdout = stdout is None and config.output is None
    if real_stdout and sys.stdout is None:  # started with stdout closed (`>&-`)
        print_error(err, "stdout is closed: give -o FILE for the records")
        return EXIT_USAGE
    try:
        records_to = stdout if stdout is not None else sys.stdout.buffer
        files = RunFiles(config.output, config.summary, stdout=records_to, fs=fs)
    except ConfigError as exc:  # -o was checked a moment ago, but the file system may have changed
        print_error(err, str(exc))
        return EXIT_USAGE
    interrupts.track(files)
    try:
        result = run(
            config, files.records, err, interrupts, records_on_terminal=real_stdout and _same_terminal()
        )
    except BaseException:
        files.save_records(commit=False)  # a bug: no half file in place of the previous one
        raise
    saved = files.save_records(commit=not (result.usage_error or result.fatal))
    if real_stdout and (result.output_closed or (not saved.written and saved.error)):
        _silence(sys.stdout)
    interrupts.report()
    # The exit code is decided here: a signal that came while the records were saved still counts.
    outcome = _outcome(result, saved, interrupted=result.interrupted or bool(interrupts.received))
    summary = _delivered(result.summary, outcome, saved, to_file=config.output is not None)
    code = exit_code(outcome)
    error = "; ".join(e for e in (result.error, saved.error) if e) or None
    summary_error = files.save_summary(summary_document(summary, code, error), records_written=saved.written)
    final = exit_code(dataclasses.replace(outcome, summary_lost=summary_error is not None))
    written_summary = config.summary if summary_error is None else None
    report(err, summary, code, quiet=config.quiet, summary_path=written_summary)
    for message in (error, summary_error):
        if message is not None:
            print_error(err, message)
    return final


def _outcome(result: ScanResult, saved: Saved, *, interrupted: bool) -> Outcome:
    committed = not (result.usage_error or result.fatal)
    return Outcome(
        usage_error=result.usage_error,
        fatal=result.fatal,
        interrupted=interrupted,
        complete=result.summary is not None and result.summary.complete,
        records_lost=committed and not saved.written,
    )


def _delivered(
    summary: ScanSummary | None, outcome: Outcome, saved: Saved, *, to_file: bool
) -> ScanSummary | None:
    """The summary of what was delivered: records that could not be saved make the run incomplete
    (it may have listed everything), and ``records`` counts what the output holds (a discarded
    file holds none)."""
    if summary is None or saved.written:
        return summary
    if outcome.records_lost:
        summary = dataclasses.replace(summary, complete=False)
    return dataclasses.replace(summary, records=0) if to_file else summary


def _same_terminal() -> bool:
    """Whether stdout and stderr are one terminal (records and the live display share a screen)."""
    try:
        return os.isatty(1) and os.isatty(2) and os.ttyname(1) == os.ttyname(2)
    except OSError:
        return False


def _silence(stream: Any) -> None:
    """Point ``stream``'s fd at /dev/null: Python would otherwise report the failed write again at
    exit (and exit 120 for a stderr it cannot flush)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)
