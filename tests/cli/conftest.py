"""The CLI against the embedded simulator, served from a thread.

``cli.main`` runs its own event loop (``anyio.run``), so the simulator cannot share the test's: it
runs on a blocking portal's loop in a worker thread, and the tests reach it through the portal.
The same simulator also serves ``eas-scan`` subprocesses.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from scanner import cli
from scanner.output.files import FileSystem
from scanner.records import RECORD_TAGS, service_summary
from scanner.simulator import CountersSnapshot, FaultConfig, Simulator

T = TypeVar("T")
Key = tuple[str, str, str]

#: The console script and ``python -m scanner`` of the interpreter running the tests (the venv's).
EAS_SCAN = str(Path(sys.executable).with_name("eas-scan"))


class ThreadedSimulator:
    """A ``Simulator`` running on a portal's event loop; every call goes through the portal."""

    def __init__(self, portal: BlockingPortal, sim: Simulator) -> None:
        self._portal = portal
        self.sim = sim
        self.endpoints = dict(sim.endpoints)
        self.regions = list(sim.regions)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self._portal.call(lambda: fn(*args))

    def counters(self) -> CountersSnapshot:
        return self.call(self.sim.counters)

    def reset_counters(self) -> None:
        self.call(self.sim.reset_counters)

    def set_faults(self, config: FaultConfig | None = None, **changes: Any) -> None:
        self.call(lambda: self.sim.set_faults(config, **changes))

    def forbid_region(self, region: str, forbidden: bool = True) -> None:
        self.call(self.sim.forbid_region, region, forbidden)

    def expected(self) -> dict[Key, dict[str, Any]]:
        """Ground truth: every record the scan should write, by (region, service, instance)."""

        def build() -> dict[Key, dict[str, Any]]:
            return {
                (region, name, instance["InstanceName"]): {
                    **instance,
                    "ClusterId": region,
                    "ServiceName": name,
                    "Service": service_summary(service),
                }
                for region, name, instance, service in self.sim.expected_records()
            }

        return self.call(build)

    def endpoint_args(self, regions: list[str] | None = None) -> list[str]:
        args: list[str] = []
        for region in regions or self.regions:
            args += ["--endpoint", f"{region}={self.endpoints[region]}"]
        return args

    def env(self) -> dict[str, str]:
        return {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": self.sim.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.sim.access_key_secret,
        }


def _start(portal: BlockingPortal, **kwargs: Any) -> tuple[Any, ThreadedSimulator]:
    manager = portal.wrap_async_context_manager(Simulator(**kwargs))
    sim = manager.__enter__()
    return manager, ThreadedSimulator(portal, sim)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


@pytest.fixture(scope="module")
def shared_sim(portal: BlockingPortal) -> Iterator[ThreadedSimulator]:
    """A small fleet that no test changes (faults and forbidden regions go to ``sim``)."""
    manager, sim = _start(portal, preset="small", seed=5)
    try:
        yield sim
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def sim(portal: BlockingPortal) -> Iterator[ThreadedSimulator]:
    """A small fleet of the test's own, free to break."""
    manager, sim = _start(portal, preset="small", seed=7)
    try:
        yield sim
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _restore_scanner_logging() -> Iterator[None]:
    # main() installs a stderr handler on the "scanner" logger; pytest swaps stderr per test.
    logger = logging.getLogger("scanner")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: str

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stdout.splitlines()]


@pytest.fixture
def run_cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Run]:
    """``cli.main(argv)`` in-process; what it wrote to stdout and stderr."""

    def run(*argv: str, fs: FileSystem | None = None) -> Run:
        capsysbinary.readouterr()
        if fs is None:
            code = cli.main(list(argv))
        else:  # the same scan, on a file system that fails on demand
            code = cli.run_scan(cli.build_parser().parse_args(list(argv)), fs=fs)
        out, err = capsysbinary.readouterr()
        return Run(code, out, err.decode())

    return run


def run_process(
    argv: list[str], *, env: dict[str, str] | None = None, module: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``eas-scan ARGV`` (or ``python -m scanner ARGV``) as a subprocess of the test's environment."""
    command = [sys.executable, "-m", "scanner", *argv] if module else [EAS_SCAN, *argv]
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def key_of(record: dict[str, Any]) -> Key:
    return (record["ClusterId"], record["ServiceName"], record["InstanceName"])


def assert_records_exact(records: list[dict[str, Any]], expected: dict[Key, dict[str, Any]]) -> None:
    keys = [key_of(record) for record in records]
    assert len(keys) == len(set(keys)), "an instance appears twice"
    assert set(keys) == set(expected)
    for record in records:
        assert record == expected[key_of(record)]
    assert all(tag in record for record in records for tag in RECORD_TAGS)
