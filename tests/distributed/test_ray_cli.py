"""``eas-scan scan --output-dir DIR --engine ray``: exact on the simulator, Ctrl-C then ``--resume``
(by the local engine: one scan directory, whichever engine wrote it), and the usage errors.

Each Ray start costs 6-11 s here: two subprocess runs start Ray, the usage errors run in-process
and start nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from anyio.from_thread import start_blocking_portal

from scanner.cli import engine as cli_engine
from scanner.cli.args import build_parser
from scanner.cli.config import config_from
from scanner.cli.main import main
from scanner.distributed import DEFAULT_UNITS_PER_WORKER
from scanner.simulator import Digest, Simulator
from tests.distributed.conftest import directory_digest

EAS_SCAN = str(Path(sys.executable).with_name("eas-scan"))
RAY_SCAN = (EAS_SCAN, "scan", "--simulate", "--engine", "ray", "--output-dir")


@pytest.fixture(scope="module")
def small_fleet() -> Digest:
    """The ground truth of ``--simulate`` (preset small): the same simulator, built here."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Simulator(preset="small")) as sim,
    ):
        return portal.call(lambda: sim.fleet_digest())


def test_two_ray_workers_scan_exactly_the_simulated_fleet(small_fleet: Digest, tmp_path: Path) -> None:
    out, summary = tmp_path / "scan", tmp_path / "summary.json"
    done = subprocess.run(
        [*RAY_SCAN, str(out), "--workers", "2", "--summary", str(summary)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert directory_digest(out) == small_fleet
    document = orjson.loads(summary.read_bytes())
    assert document["complete"] is True
    assert document["exit_code"] == 0
    assert document["records"] == small_fleet.count
    assert document["units"]["complete"] == len(document["regions"]) == 2
    assert sum(worker["units"] for worker in document["workers"].values()) == 2
    assert "progress: units 2/2" in done.stderr
    assert main(["status", str(out)]) == 0


def test_ctrl_c_leaves_the_directory_for_resume(small_fleet: Digest, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    # One worker scanning one unit at a time, a page of one instance, 200 requests/s: the second
    # region takes ~3 s, and is still being listed when the first one's units line comes.
    process = subprocess.Popen(
        [
            *RAY_SCAN,
            str(out),
            "--workers",
            "1",
            "--units-per-worker",
            "1",
            "--page-size",
            "1",
            "--rate-limit",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = _lines(process.stderr)
        for line in lines:
            if "progress: units 1/2" in line:
                os.kill(process.pid, signal.SIGINT)
                break
        rest = "".join(lines)
        assert process.wait(timeout=60) == 130, rest
        assert "incomplete: cancelled" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert main(["status", str(out)]) == 3
    # The local engine finishes what the Ray engine started: the same scan directory.
    assert main(["scan", "--simulate", "--output-dir", str(out), "--resume", "--quiet"]) == 0
    assert directory_digest(out) == small_fleet
    assert main(["status", str(out)]) == 0


def _lines(stream: object) -> Iterator[str]:
    assert hasattr(stream, "readline")
    while line := stream.readline():
        yield line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--engine", "ray"], "--engine ray needs --output-dir DIR"),
        (["--workers", "2", "--output-dir", "{dir}"], "--workers needs --engine ray"),
        (["--ray-address", "auto", "--output-dir", "{dir}"], "--ray-address needs --engine ray"),
        (["--engine", "ray", "--output-dir", "{dir}", "--workers", "0"], "--workers must be positive"),
        (["--units-per-worker", "4", "--output-dir", "{dir}"], "--units-per-worker needs --engine ray"),
        (
            ["--engine", "ray", "--output-dir", "{dir}", "--units-per-worker", "0"],
            "--units-per-worker must be positive, got '0'",
        ),
        (
            ["--engine", "ray", "--output-dir", "{dir}", "--units-per-worker", "1.5"],
            "--units-per-worker must be a positive integer, got '1.5'",
        ),
        (
            ["--engine", "ray", "--output-dir", "{dir}", "--units-per-worker", "many"],
            "--units-per-worker must be a positive integer, got 'many'",
        ),
        (["--engine", "spark", "--output-dir", "{dir}"], "invalid choice: 'spark'"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scan", "--simulate", *(flag.format(dir=tmp_path / "scan") for flag in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "scan").exists()


def test_without_ray_installed_one_line_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_engine, "ray_installed", lambda: False)
    out = tmp_path / "scan"
    assert main(["scan", "--simulate", "--output-dir", str(out), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "eas-fleet-scanner[ray]" in err
    assert not out.exists()


def test_a_local_scan_into_a_directory_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys; from scanner.cli.main import main; "
        f"code = main(['scan', '--simulate', '--quiet', '--output-dir', {str(tmp_path / 'scan')!r}]); "
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); "
        "print(bad); sys.exit(code or (1 if bad else 0))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_units_per_worker_reaches_the_ray_engine(tmp_path: Path) -> None:
    def engine(*flags: str) -> cli_engine.EngineOptions:
        argv = ["scan", "--simulate", "--output-dir", str(tmp_path / "scan"), "--engine", "ray", *flags]
        return config_from(build_parser().parse_args(argv)).engine

    assert engine("--units-per-worker", "3").units_per_worker == 3
    # The CLI's default is the library's (the CLI does not import the library for a local scan).
    assert engine().units_per_worker == cli_engine.DEFAULT_UNITS_PER_WORKER == DEFAULT_UNITS_PER_WORKER
