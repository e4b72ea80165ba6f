"""Signals in quick succession, as ``timeout`` and supervisors send them (issue 11).

Contract: the first SIGINT/SIGTERM starts a clean stop (summary written, temporary files removed
or committed as documented, exit 130); further signals during that stop are absorbed; only the
third forces an immediate exit (exit 130, temporary files still removed). The scan is caught
mid-way: the server holds every instance page for a few seconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.hostile.harness import (
    EXIT_INTERRUPTED,
    WhileRunning,
    assert_no_secrets,
    assert_records,
    scan,
)
from tests.hostile.server import Call, HostileServer, Response

HOLD_S = 2.0


async def slow_instances(server: HostileServer, call: Call) -> Response | None:
    if call.action == "ListServiceInstances":
        await server.hold(HOLD_S)
    return None


def signals_once_listing(signum: signal.Signals, count: int) -> WhileRunning:
    """Once instance pages are being asked for, send ``count`` signals 1 ms apart."""

    def act(server: HostileServer, pid: int) -> bool:
        if server.count("ListServiceInstances") < 2:
            return False
        for n in range(count):
            if n:
                time.sleep(0.001)
            os.kill(pid, signum)
        return True

    return act


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_during_the_clean_stop_is_absorbed(tmp_path: Path, signum: signal.Signals) -> None:
    server, run = scan(tmp_path, slow_instances, while_running=signals_once_listing(signum, 2))
    assert run.killed is None, f"the scan must stop on the signals, by itself\n{run.explain()}"
    assert run.returncode == EXIT_INTERRUPTED, (
        f"two {signum.name}s 1 ms apart: the first starts a clean stop, the second is absorbed; "
        f"expected exit {EXIT_INTERRUPTED}, got {run.returncode}\n{run.explain()}"
    )
    assert "Traceback" not in run.stderr, f"stderr must not show a traceback\n{run.explain()}"
    assert not run.leftovers, (
        f"temporary files were left beside -o/--summary: {run.leftovers}\n{run.explain()}"
    )
    summary = run.summary  # written by the clean stop
    assert summary.get("exit_code") == EXIT_INTERRUPTED, f"the summary says exit 130\n{run.explain()}"
    assert summary.get("complete") is False, f"an interrupted scan is not complete\n{run.explain()}"
    assert_no_secrets(run)
    # Whole lines only, each a real record, none repeated (every service's records may be missing).
    assert_records(run, server, exact_except=[(r, s.name) for r, ss in server.fleet.items() for s in ss])


def test_a_third_signal_forces_the_exit_and_still_removes_temporary_files(tmp_path: Path) -> None:
    _, run = scan(tmp_path, slow_instances, while_running=signals_once_listing(signal.SIGTERM, 3))
    assert run.killed is None, f"the scan must stop on the signals, by itself\n{run.explain()}"
    assert run.returncode == EXIT_INTERRUPTED, (
        f"three SIGTERMs 1 ms apart force an immediate exit {EXIT_INTERRUPTED}, got {run.returncode}\n"
        f"{run.explain()}"
    )
    assert not run.leftovers, (
        f"even a forced exit removes its temporary files; left: {run.leftovers}\n{run.explain()}"
    )
    assert_no_secrets(run)
