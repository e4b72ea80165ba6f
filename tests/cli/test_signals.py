"""SIGINT and SIGTERM: the first stops the scan cleanly (130), the second is absorbed, the third ends
the process at once (130, no temporary file left).

The process tests run ``eas-scan`` against a slow simulator, so that the scan is mid-way when the
signals arrive; the unit tests drive ``Interrupts`` in-process with ``signal.raise_signal``.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from rich.console import Console

from scanner import cli
from scanner.cli.signals import Interrupts
from scanner.simulator import FaultConfig
from tests.cli.conftest import EAS_SCAN, ThreadedSimulator, key_of
from tests.output.fakefs import FaultyFileSystem

SLOW = FaultConfig(latency_ms=40)  # one page per request, 40 ms each: the scan takes seconds


def _start(sim: ThreadedSimulator, argv: list[str], *, stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [EAS_SCAN, "scan", *sim.endpoint_args(), "--concurrency", "2", "--page-size", "5", *argv],
        env={**os.environ, **sim.env()},
        stdout=stdout,
        stderr=stderr,
    )


def _wait_mid_scan(sim: ThreadedSimulator, process: subprocess.Popen[bytes], requests: int = 20) -> None:
    deadline = time.monotonic() + 30
    while sim.counters().requests_for("ListServiceInstances") < requests:
        assert process.poll() is None, "the scan ended before the signal"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("records_to", ["-o", "stdout"])
def test_two_sigterms_1ms_apart_stop_cleanly_with_130(
    sim: ThreadedSimulator, tmp_path: Path, records_to: str
) -> None:
    """What ``timeout`` and many supervisors do: SIGTERM, then SIGTERM again a moment later."""
    out, summary_path, stdout_path = tmp_path / "fleet.jsonl", tmp_path / "run.json", tmp_path / "stdout"
    sim.set_faults(SLOW)
    argv = ["--summary", str(summary_path)] + (["-o", str(out)] if records_to == "-o" else [])
    with stdout_path.open("wb") as stdout:
        process = _start(sim, argv, stdout=stdout, stderr=subprocess.PIPE)
        try:
            _wait_mid_scan(sim, process)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.001)
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
        finally:
            _stop(process)
    stderr = err.decode()
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert "received SIGTERM: stopping" in stderr
    assert "Traceback" not in stderr
    expected_files = ["fleet.jsonl", "run.json", "stdout"] if records_to == "-o" else ["run.json", "stdout"]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected_files  # no temporary file left
    data = out.read_bytes() if records_to == "-o" else stdout_path.read_bytes()
    if records_to == "-o":
        assert stdout_path.read_bytes() == b""
    assert data.endswith(b"\n")  # whole lines only, each a record of the fleet
    expected = sim.expected()
    records = [orjson.loads(line) for line in data.splitlines()]
    assert 0 < len(records) < len(expected)
    for record in records:
        assert record == expected[key_of(record)]
    summary = orjson.loads(summary_path.read_bytes())
    assert (summary["exit_code"], summary["complete"]) == (cli.EXIT_INTERRUPTED, False)
    assert summary["records"] == len(records)


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: the next write to it blocks until the other end reads."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    chunk = b"x" * 65536
    while True:
        try:
            os.write(write, chunk)
        except BlockingIOError:
            if len(chunk) == 1:
                break
            chunk = chunk[: len(chunk) // 2]
    os.set_blocking(write, True)
    return read, write


def test_a_third_signal_ends_a_stuck_stop_at_once_without_temporary_files(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    """A stop that hangs (here: on a stderr nobody reads) ends at the third signal, still tidily."""
    out, summary_path = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    out.write_bytes(b"an earlier inventory\n")
    sim.set_faults(SLOW)
    read, write = _full_pipe()
    try:
        # --quiet: nothing reaches stderr until the first signal's warning, which then blocks.
        argv = ["-o", str(out), "--summary", str(summary_path), "--quiet"]
        process = _start(sim, argv, stdout=subprocess.DEVNULL, stderr=write)
        os.close(write)
        try:
            _wait_mid_scan(sim, process)
            assert len(list(tmp_path.iterdir())) == 2  # the records' temporary file is there
            process.send_signal(signal.SIGINT)
            time.sleep(0.3)
            assert process.poll() is None  # stuck in its clean stop
            process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert process.poll() is None  # the second signal is absorbed
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == cli.EXIT_INTERRUPTED
        finally:
            _stop(process)
    finally:
        os.close(read)
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.jsonl"]  # no temporary file, no summary
    assert out.read_bytes() == b"an earlier inventory\n"


# --- in-process ----------------------------------------------------------------------------------


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    before = {signum: signal.getsignal(signum) for signum in Interrupts.SIGNALS}
    with Interrupts().installed() as interrupts:
        yield interrupts
    assert {signum: signal.getsignal(signum) for signum in Interrupts.SIGNALS} == before


def test_the_first_signal_stops_once_and_the_second_is_absorbed(
    interrupts: Interrupts, caplog: pytest.LogCaptureFixture
) -> None:
    stops: list[int] = []

    async def scan() -> None:
        with interrupts.stopping(lambda: stops.append(len(interrupts.received))):
            signal.raise_signal(signal.SIGTERM)
            await anyio.sleep(0.01)
            signal.raise_signal(signal.SIGINT)
            await anyio.sleep(0.01)

    anyio.run(scan)
    assert stops == [1]
    assert interrupts.received == [signal.SIGTERM, signal.SIGINT]
    assert [record.getMessage() for record in caplog.records] == [
        "received SIGTERM: stopping",
        "received SIGINT again: still stopping (a third signal stops at once, without a summary)",
    ]


def test_a_signal_before_the_scan_starts_stops_it_at_once(interrupts: Interrupts) -> None:
    signal.raise_signal(signal.SIGINT)  # while the flags are read, say: nothing to stop yet
    stops: list[str] = []

    async def scan() -> None:
        with interrupts.stopping(lambda: stops.append("stop")):
            assert stops == ["stop"]

    anyio.run(scan)
    assert interrupts.received == [signal.SIGINT]


def test_a_signal_after_the_loop_is_only_counted(interrupts: Interrupts) -> None:
    async def scan() -> None:
        with interrupts.stopping(lambda: pytest.fail("no scan to stop any more")):
            pass

    anyio.run(scan)
    signal.raise_signal(signal.SIGTERM)  # while the records are saved: the run will exit 130
    assert interrupts.received == [signal.SIGTERM]


def test_an_interrupted_scan_in_process_exits_130_with_its_summary(
    sim: ThreadedSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM raised from inside the scan (as a supervisor would send it), run_scan in-process."""
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    summary_path = tmp_path / "run.json"
    sim.set_faults(SLOW)
    args = cli.build_parser().parse_args(
        ["scan", *sim.endpoint_args(), "--page-size", "5", "--summary", str(summary_path), "--quiet"]
    )

    class SignalAfterAPage(io.BytesIO):
        def write(self, data: Any, /) -> int:
            if b"\n" in data and not self.getvalue():
                signal.raise_signal(signal.SIGTERM)
            return super().write(data)

    stdout = SignalAfterAPage()
    assert cli.run_scan(args, stdout=stdout) == cli.EXIT_INTERRUPTED
    summary = orjson.loads(summary_path.read_bytes())
    assert (summary["exit_code"], summary["complete"]) == (cli.EXIT_INTERRUPTED, False)
    assert 0 < summary["records"] < len(sim.expected())


def test_a_signal_while_the_flags_are_checked_stops_before_any_request(
    shared_sim: ThreadedSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in shared_sim.env().items():
        monkeypatch.setenv(name, value)
    out, summary_path = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    fs = FaultyFileSystem()
    fs.before("access", lambda: signal.raise_signal(signal.SIGTERM))  # checking -o's folder
    args = cli.build_parser().parse_args(
        ["scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary_path), "--quiet"]
    )
    shared_sim.reset_counters()
    assert cli.run_scan(args, stderr=Console(file=io.StringIO()), fs=fs) == cli.EXIT_INTERRUPTED
    assert shared_sim.counters().total_requests == 0
    summary = orjson.loads(summary_path.read_bytes())
    assert (summary["exit_code"], summary["complete"], summary["records"]) == (cli.EXIT_INTERRUPTED, False, 0)
    assert out.read_bytes() == b""  # like any interrupted run: what was read (nothing), whole lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]
