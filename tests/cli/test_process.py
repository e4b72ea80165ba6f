"""``eas-scan`` and ``python -m scanner`` as processes: what an operator or a cron job sees.

Few and fast (each start costs most of a second); the flag matrix runs in-process (test_scan.py).
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from scanner import __version__, cli
from scanner.simulator import FaultConfig
from tests.cli.conftest import (
    EAS_SCAN,
    Run,
    ThreadedSimulator,
    assert_records_exact,
    key_of,
    run_process,
)


def test_version_from_the_console_script_and_python_m() -> None:
    script = run_process(["--version"])
    module = run_process(["--version"], module=True)
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout == f"eas-scan {__version__}\n"


def test_scan_as_a_process_writes_the_file_and_summary(shared_sim: ThreadedSimulator, tmp_path: Path) -> None:
    out, summary = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    result = run_process(
        ["scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary)], env=shared_sim.env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert_records_exact(records, shared_sim.expected())
    assert orjson.loads(summary.read_bytes())["complete"] is True
    # stderr is a pipe: the summary table, no live display.
    assert "complete: 1,000 instances" in result.stderr
    assert "req/s" not in result.stderr


def test_python_m_scanner_simulate_to_stdout() -> None:
    result = run_process(["scan", "--simulate", "--quiet"], module=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len({key_of(record) for record in records}) == 1000


def test_sigint_mid_scan_exits_130_with_whole_lines(sim: ThreadedSimulator, tmp_path: Path) -> None:
    out, summary_path = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    # Slow enough that the scan is still running when the signal arrives; one page per request.
    sim.set_faults(FaultConfig(latency_ms=40))
    process = subprocess.Popen(
        [
            EAS_SCAN,
            "scan",
            *sim.endpoint_args(),
            "--concurrency",
            "2",
            "--page-size",
            "5",
            "-o",
            str(out),
            "--summary",
            str(summary_path),
        ],
        env={**os.environ, **sim.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while sim.counters().requests_for("ListServiceInstances") < 20:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Mid-scan the output is a temporary file beside the target; the target does not exist yet.
        temps = [p.name for p in tmp_path.iterdir()]
        assert len(temps) == 1
        assert temps[0].startswith(".fleet.jsonl.")
        assert temps[0].endswith(".tmp")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert stdout == ""
    assert "SIGINT" in stderr
    assert "INCOMPLETE" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]
    data = out.read_bytes()
    assert data.endswith(b"\n") or data == b""
    expected = sim.expected()
    records = [orjson.loads(line) for line in data.splitlines()]
    assert len(records) < len(expected)
    for record in records:
        assert record == expected[key_of(record)]
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["complete"] is False
    assert summary["exit_code"] == cli.EXIT_INTERRUPTED
    assert summary["records"] == len(records)


def test_eas_scan_simulate_serves_the_scanner_and_stops_on_sigint(
    run_cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    process = subprocess.Popen(
        [EAS_SCAN, "simulate", "--preset", "small", "--seed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", info["access_key_id"])
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", info["access_key_secret"])
        endpoints = [f"--endpoint={region}={url}" for region, url in info["endpoints"].items()]
        result = run_cli("scan", *endpoints, "--quiet")
        assert result.code == 0, result.stderr
        assert len(result.records()) == info["instances"]
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0


def test_readme_first_command_in_a_terminal_shows_records_and_a_progress_bar() -> None:
    """stdout and stderr on one pseudo-terminal, as a person runs ``eas-scan scan --simulate``."""
    main, child = pty.openpty()
    process = subprocess.Popen([EAS_SCAN, "scan", "--simulate"], stdout=child, stderr=child)
    os.close(child)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()
    screen = b"".join(chunks).decode()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    lines = [line for part in plain.split("\r\n") for line in part.split("\r")]
    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    # Every record whole on its line: the live display never overwrote one.
    assert len(records) == len({key_of(record) for record in records}) == 1000
    final = "\n".join(lines[-12:])
    assert re.search(r"instances +━+ 1000/1000", plain)
    assert re.search(r"regions +━+ 2/2", plain)
    assert "req/s" in plain
    assert "ETA" in plain
    assert "complete: 1,000 instances" in final


def test_a_reader_that_goes_away_stops_the_scan_without_a_traceback(tmp_path: Path) -> None:
    """``eas-scan scan --simulate | head -c 100``."""
    summary_path = tmp_path / "run.json"
    process = subprocess.Popen(
        [EAS_SCAN, "scan", "--simulate", "--summary", str(summary_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        assert process.stdout.read(100).startswith('{"InstanceName":')
        process.stdout.close()  # more than a pipe's buffer is still to come
        stderr = process.stderr.read()
        assert process.wait(timeout=30) == cli.EXIT_FATAL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert stderr.endswith(
        "eas-scan: error: stdout was closed by its reader (broken pipe): the scan was stopped\n"
    )
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["complete"] is False
    assert summary["exit_code"] == cli.EXIT_FATAL
    assert summary["records"] < 1000


def test_stdout_failing_at_its_last_flush_ends_in_one_line(tmp_path: Path) -> None:
    """``eas-scan scan --format csv ... > /dev/full``: only the header, which waits in stdout's buffer."""
    summary_path = tmp_path / "run.json"
    # Buffered, as stdout is by default: the write fails only at the flush after the scan.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    argv = ["scan", "--simulate", "--format", "csv", "--services", "nosuch", "--quiet"]
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [EAS_SCAN, *argv, "--summary", str(summary_path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == cli.EXIT_FATAL
    # Not reported again by Python's own flush of stdout at exit ("Exception ignored").
    assert result.stderr == (
        "eas-scan: error: cannot write to stdout (No space left on device): "
        "the last records were not written\n"
    )
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["complete"] is False
    assert summary["exit_code"] == cli.EXIT_FATAL


def test_an_unwritable_stderr_keeps_the_records_and_the_exit_code(tmp_path: Path) -> None:
    """``eas-scan scan -o fleet.jsonl 2>>log`` with the log's disk full: nothing to say it on."""
    out = tmp_path / "fleet.jsonl"
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [EAS_SCAN, "scan", "--simulate", "-o", str(out)], stderr=full, env=env, timeout=60
        )
    assert result.returncode == cli.EXIT_COMPLETE  # not 1 (the table), nor 120 (the log at exit)
    assert len(out.read_bytes().splitlines()) == 1000
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.jsonl"]
