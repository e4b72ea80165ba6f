"""The exit code as a table: every way a run can end, and the code it gets (README's table)."""

from __future__ import annotations

import pytest

from scanner.cli.outcome import (
    EXIT_COMPLETE,
    EXIT_FATAL,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Outcome,
    exit_code,
)

# (outcome, code, why)
TABLE = [
    (Outcome(complete=True), EXIT_COMPLETE, "every region and service listed, the output saved"),
    (Outcome(complete=False), EXIT_INCOMPLETE, "finished, some region or service failed"),
    (Outcome(usage_error=True), EXIT_USAGE, "a flag, a path or the configuration refused"),
    (Outcome(usage_error=True, summary_lost=True), EXIT_USAGE, "the usage error is what went wrong first"),
    (Outcome(fatal=True), EXIT_FATAL, "no credentials, every region refused, the output closed"),
    (Outcome(fatal=True, interrupted=True), EXIT_FATAL, "failed before the signal could stop it"),
    (Outcome(fatal=True, summary_lost=True), EXIT_FATAL, "fatal either way"),
    (Outcome(interrupted=True), EXIT_INTERRUPTED, "a signal: stopped cleanly"),
    (Outcome(interrupted=True, complete=True), EXIT_INTERRUPTED, "a signal while the records were saved"),
    (Outcome(interrupted=True, records_lost=True), EXIT_INTERRUPTED, "interrupted keeps 130"),
    (Outcome(interrupted=True, summary_lost=True), EXIT_INTERRUPTED, "interrupted keeps 130"),
    (Outcome(complete=True, records_lost=True), EXIT_FATAL, "listed, but the inventory not delivered"),
    (Outcome(complete=False, records_lost=True), EXIT_FATAL, "incomplete, and not delivered either"),
    (Outcome(complete=True, summary_lost=True), EXIT_FATAL, "the records saved, the summary not"),
    (Outcome(complete=False, summary_lost=True), EXIT_FATAL, "an incomplete scan whose summary failed"),
]


@pytest.mark.parametrize(("outcome", "code", "why"), TABLE, ids=[why for _, _, why in TABLE])
def test_exit_code(outcome: Outcome, code: int, why: str) -> None:
    assert exit_code(outcome) == code


def test_the_codes_are_the_documented_ones() -> None:
    assert (EXIT_COMPLETE, EXIT_FATAL, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)
