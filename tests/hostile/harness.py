"""Run ``python -m scanner scan`` as a real process against a ``HostileServer``, and judge what it did.

Each run is bounded twice over, so that a scanner that misbehaves cannot hang the suite or the
machine: it is killed after ``timeout`` seconds, and as soon as its resident memory passes
``RSS_KILL_MB`` (a gzip bomb read whole would otherwise take gigabytes). Its peak RSS is its own
``ru_maxrss``, reported by ``launch.py`` (see there why the scanner is not a direct child).

The assertions say what the issue-11 contract (/work/team/CONTRACTS.md) and README promise, so a
failure reads as "expected X, got Y" with the scanner's own stderr attached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from tests.hostile.server import Behaviour, HostileServer, expected_record, make_fleet

LAUNCHER: Final = Path(__file__).with_name("launch.py")

#: Credentials of the run. The key id is masked as LTAI****wxyz wherever it may appear.
KEY_ID: Final = "LTAI5tTestKey1234wxyz"
MASKED_KEY_ID: Final = "LTAI****wxyz"
SECRET: Final = "hStLsEcReT9f8e7d6c5b4a3210ZyXwVu"
TOKEN: Final = "CAIShostileSTStoken0a1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ/+=="
SECRETS: Final = {"the AccessKeySecret": SECRET, "the SecurityToken": TOKEN, "the full AccessKeyId": KEY_ID}
#: No run may show this many consecutive characters of a secret (LTAI****wxyz shares only 4).
_PIECE: Final = 12

#: The region that misbehaves, and one that stays honest (so "every region refused" is not hit).
BAD: Final = "cn-hangzhou"
GOOD: Final = "cn-shanghai"
REGIONS: Final = (BAD, GOOD)
#: Services per region (name -> instances). With ``--page-size 10``: one page, three pages, one page.
SIZES: Final = {"svc-a": 4, "svc-b": 23, "svc-c": 1}
PAGE_SIZE: Final = 10
MAX_ATTEMPTS: Final = 2

#: A scan of this fleet takes about a second; this is the bound for "finished".
PROCESS_TIMEOUT_S: Final = 30.0
#: The bound for "bounded memory" (a scan of this fleet peaks around 45 MB).
RSS_LIMIT_MB: Final = 300.0
#: Killed at once above this (a guard for the machine, far above any limit asserted).
RSS_KILL_MB: Final = 1024.0

EXIT_COMPLETE: Final = 0
EXIT_FATAL: Final = 1
EXIT_INCOMPLETE: Final = 3
EXIT_INTERRUPTED: Final = 130

Key = tuple[str, str, str]
WhileRunning = Callable[[HostileServer, int], bool]


@dataclass
class ScanRun:
    """What one ``eas-scan scan`` process did."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: str
    output: bytes | None  # the -o file, when it exists
    summary_bytes: bytes | None
    elapsed_s: float
    max_rss_mb: float
    killed: str | None  # why the harness killed it, if it did
    leftovers: list[str]  # files beside -o and --summary other than those two

    @property
    def summary(self) -> dict[str, Any]:
        assert self.summary_bytes is not None, f"no --summary file was written\n{self.explain()}"
        data: dict[str, Any] = orjson.loads(self.summary_bytes)
        return data

    def records(self) -> list[dict[str, Any]]:
        data = self.output or b""
        return [orjson.loads(line) for line in data.splitlines()]

    def explain(self) -> str:
        """The process's stderr (its tail), for assertion messages."""
        tail = self.stderr[-4000:]
        return (
            f"exit code {self.returncode}, {self.elapsed_s:.1f} s, peak RSS {self.max_rss_mb:.0f} MB"
            + (f", KILLED: {self.killed}" if self.killed else "")
            + f"\n--- stderr (last 4000 chars) ---\n{tail}"
        )


def scanner_env(home: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ALIBABA_CLOUD_", "ALIBABACLOUD_", "ALICLOUD_"))
    }
    env.update(
        HOME=str(home),
        ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET,
        ALIBABA_CLOUD_SECURITY_TOKEN=TOKEN,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
    )
    return env


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a running process, in KiB; zeros once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


def _read_pid(report: Path) -> int | None:
    try:
        return int(Path(f"{report}.pid").read_text())
    except (OSError, ValueError):
        return None


def run_scan(
    server: HostileServer,
    workdir: Path,
    *,
    regions: Sequence[str] = REGIONS,
    extra: Sequence[str] = (),
    timeout: float = PROCESS_TIMEOUT_S,
    while_running: WhileRunning | None = None,
    env: Mapping[str, str] | None = None,
) -> ScanRun:
    """``python -m scanner scan`` against ``server``, with -o and --summary under ``workdir/out``.

    ``env``: variables set for the scanner on top of ``scanner_env``'s.

    ``while_running(server, pid)`` is called every 20 ms while the scanner (``pid``) runs, until it
    returns True: to act on the scan from outside (send it signals) at the right moment.
    """
    out_dir, io_dir, home = workdir / "out", workdir / "io", workdir / "home"
    for folder in (out_dir, io_dir, home):
        folder.mkdir(parents=True, exist_ok=True)
    output, summary = out_dir / "fleet.jsonl", out_dir / "run.json"
    argv = [sys.executable, "-m", "scanner", "scan", "--regions", ",".join(regions)]
    for region in regions:
        argv += ["--endpoint", f"{region}={server.endpoints[region]}"]
    argv += [
        "--page-size",
        str(PAGE_SIZE),
        "--max-attempts",
        str(MAX_ATTEMPTS),
        "--no-progress",
        "-o",
        str(output),
        "--summary",
        str(summary),
        *extra,
    ]
    stdout_path, stderr_path, report = io_dir / "stdout", io_dir / "stderr", io_dir / "rusage"
    killed: str | None = None
    peak_kib = 0
    child: int | None = None
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(report), "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env={**scanner_env(home), **(env or {})},
            cwd=workdir,
            start_new_session=True,  # its own process group: a kill reaches the scanner too
        )
        deadline = started + timeout
        try:
            while process.poll() is None:
                if child is None:
                    child = _read_pid(report)
                if child is not None and while_running is not None and while_running(server, child):
                    while_running = None
                if child is not None and killed is None:
                    rss, hwm = _memory_kib(child)
                    peak_kib = max(peak_kib, hwm)
                    if rss > RSS_KILL_MB * 1024:
                        killed = (
                            f"its RSS reached {rss / 1024:.0f} MB (the harness kills at {RSS_KILL_MB:.0f} MB)"
                        )
                if killed is None and time.monotonic() > deadline:
                    killed = f"still running after {timeout:.0f} s"
                if killed is not None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    break
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        elapsed = time.monotonic() - started
    returncode = process.returncode
    if report.exists():  # the launcher saw the scanner end: its exact status and its own peak RSS
        maxrss, code = report.read_text().split()
        peak_kib, returncode = max(peak_kib, int(maxrss)), int(code)
    return ScanRun(
        argv=argv,
        returncode=returncode,
        stdout=stdout_path.read_bytes(),
        stderr=stderr_path.read_bytes().decode("utf-8", "replace"),
        output=output.read_bytes() if output.exists() else None,
        summary_bytes=summary.read_bytes() if summary.exists() else None,
        elapsed_s=elapsed,
        max_rss_mb=peak_kib / 1024,
        killed=killed,
        leftovers=sorted(p.name for p in out_dir.iterdir() if p not in (output, summary)),
    )


def scan(
    workdir: Path,
    behaviour: Behaviour | None,
    *,
    sizes: Mapping[str, int] = SIZES,
    regions: Sequence[str] = REGIONS,
    extra: Sequence[str] = (),
    timeout: float = PROCESS_TIMEOUT_S,
    while_running: WhileRunning | None = None,
) -> tuple[HostileServer, ScanRun]:
    """Serve ``sizes`` in every region of ``regions``, misbehaving per ``behaviour``; scan it."""
    with HostileServer(make_fleet(regions, sizes), behaviour) as server:
        run = run_scan(
            server, workdir, regions=regions, extra=extra, timeout=timeout, while_running=while_running
        )
    assert not server.errors, "the hostile server itself failed (a bug in the test):\n" + "\n".join(
        server.errors
    )
    return server, run


# --- what every run must do --------------------------------------------------------------------


def assert_well_behaved(run: ScanRun, *, rss_limit_mb: float = RSS_LIMIT_MB) -> None:
    """Bounded time, bounded memory, no traceback, no temporary file left, nothing secret anywhere."""
    assert run.killed is None, f"the scan must end on its own, in bounded time and memory\n{run.explain()}"
    assert run.max_rss_mb < rss_limit_mb, (
        f"peak RSS must stay under {rss_limit_mb:.0f} MB, was {run.max_rss_mb:.0f} MB\n{run.explain()}"
    )
    assert "Traceback" not in run.stderr, f"stderr must not show a traceback\n{run.explain()}"
    assert "MemoryError" not in run.stderr, f"the scan must never run out of memory\n{run.explain()}"
    assert not run.leftovers, (
        f"temporary files were left beside -o/--summary: {run.leftovers}\n{run.explain()}"
    )
    assert_no_secrets(run)


def assert_no_secrets(run: ScanRun) -> None:
    """Neither the secret, the token nor the full key id, nor any 12-character piece of them (a
    snippet cut short must not leak half a token), in stdout, stderr, -o or --summary."""
    places = {
        "stdout": run.stdout,
        "stderr": run.stderr.encode(),
        "the -o file": run.output or b"",
        "the --summary file": run.summary_bytes or b"",
    }
    for where, data in places.items():
        for what, value in SECRETS.items():
            assert value.encode() not in data, (
                f"{what} ({value!r}) must never appear in {where} (contract: redaction)\n{run.explain()}"
            )
            for start in range(len(value) - _PIECE + 1):
                piece = value[start : start + _PIECE]
                assert piece.encode() not in data, (
                    f"part of {what} ({piece!r} of {value!r}) appears in {where}: redaction must not leave "
                    f"pieces (a snippet cut short) (contract: redaction)\n{run.explain()}"
                )


def assert_outcome(run: ScanRun, *, exit_code: int, complete: bool) -> None:
    summary = run.summary
    assert run.returncode == exit_code, (
        f"expected exit code {exit_code} (complete={complete}), got {run.returncode}; "
        f"summary complete={summary.get('complete')}, failures={summary.get('failures')}\n{run.explain()}"
    )
    assert summary.get("complete") is complete, (
        f"expected summary complete={complete}, got {summary.get('complete')}; "
        f"failures={summary.get('failures')}\n{run.explain()}"
    )
    assert summary.get("exit_code") == exit_code, (
        f"the summary's exit_code must be {exit_code}, got {summary.get('exit_code')}\n{run.explain()}"
    )


def failures(run: ScanRun) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = run.summary.get("failures", [])
    return found


def assert_failure(
    run: ScanRun, *, region: str, service: str | None, codes: Iterable[str] | None = None
) -> dict[str, Any]:
    """A ``failures[]`` entry for (region, service) with one of ``codes``; returns it."""
    wanted = set(codes) if codes is not None else None
    entries = [f for f in failures(run) if f.get("region") == region and f.get("service") == service]
    what = f"region {region}" + (f", service {service}" if service else " (region-level, service null)")
    expected = f"code in {sorted(wanted)}" if wanted is not None else "any code"
    assert entries, (
        f"expected a failure entry for {what} with {expected}; failures were {failures(run)}\n{run.explain()}"
    )
    if wanted is not None:
        matching = [f for f in entries if f.get("code") in wanted]
        assert matching, (
            f"expected the failure of {what} to have {expected}, got "
            f"{[f.get('code') for f in entries]} ({entries})\n{run.explain()}"
        )
        entries = matching
    for entry in entries:
        message = str(entry.get("message"))
        assert "\n" not in message, (
            f"a failure's message must be one line (contract: one line per failure, greppable), "
            f"got {message!r}"
        )
    return entries[0]


def assert_region(run: ScanRun, region: str, *, complete: bool) -> None:
    regions = run.summary.get("regions", {})
    assert region in regions, f"the summary must report region {region}: {regions}\n{run.explain()}"
    assert regions[region].get("complete") is complete, (
        f"expected region {region} complete={complete}, got {regions[region]}\n{run.explain()}"
    )


# --- records -----------------------------------------------------------------------------------


def key_of(record: Mapping[str, Any]) -> Key:
    return (record.get("ClusterId"), record.get("ServiceName"), record.get("InstanceName"))  # type: ignore[return-value]


def assert_records(
    run: ScanRun,
    server: HostileServer,
    *,
    exact_except: Iterable[tuple[str, str]] = (),
    at_least_served: Iterable[tuple[str, str]] = (),
    none_of: Iterable[tuple[str, str]] = (),
    skip: Iterable[tuple[str, str]] = (),
) -> None:
    """Every record once; every service of the fleet written exactly, except those named.

    ``exact_except``: services whose records are only checked to be real (handed out by the server,
    correct) and not repeated. ``at_least_served``: of those, the services whose every instance
    handed out in a page must have been written ("its records are still written"). ``none_of``:
    services that must have no record at all. ``skip``: services the caller checks itself.
    """
    records = run.records()
    keys = Counter(key_of(record) for record in records)
    repeated = sorted(key for key, count in keys.items() if count > 1)
    assert not repeated, f"each instance must be written once; repeated: {repeated[:10]}\n{run.explain()}"
    by_key = {key_of(record): record for record in records}
    exact_except, at_least_served, none_of, skip = (
        set(exact_except),
        set(at_least_served),
        set(none_of),
        set(skip),
    )
    loose = exact_except | none_of
    known: set[Key] = set()
    for region, services in server.fleet.items():
        for service in services:
            expected = {
                (region, service.name, i["InstanceName"]): expected_record(region, service, i)
                for i in service.instances
            }
            known |= set(expected)
            written = {key: record for key, record in by_key.items() if key[:2] == (region, service.name)}
            target = (region, service.name)
            if target in skip:
                known |= set(written)
                continue
            if target in none_of:
                assert not written, (
                    f"{target} must have no records, got {sorted(written)[:5]}\n{run.explain()}"
                )
                continue
            if target not in loose:
                missing = sorted(set(expected) - set(written))
                extra = sorted(set(written) - set(expected))
                assert (missing, extra) == ([], []), (
                    f"the records of {target} (valid data) must be exactly its {len(expected)} "
                    f"instances: missing {missing[:5]}, unexpected {extra[:5]}\n{run.explain()}"
                )
            for key, record in written.items():
                assert key in expected, f"{key} was never served by the server\n{run.explain()}"
                assert record == expected[key], (
                    f"the record of {key} must be the instance untouched plus ClusterId, ServiceName "
                    f"and Service;\nexpected {expected[key]}\n     got {record}"
                )
            if target in at_least_served:
                served = server.served.get(target, set())
                unwritten = sorted(served - {key[2] for key in written})
                assert not unwritten, (
                    f"every instance of {target} handed out in a page must still be written "
                    f"(contract: its records still written); missing {unwritten}\n{run.explain()}"
                )
    strays = sorted(set(by_key) - known)
    assert not strays, f"records of instances that do not exist: {strays[:5]}\n{run.explain()}"
