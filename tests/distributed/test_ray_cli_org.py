"""``eas-scan scan --simulate org-small --engine ray``: an organisation on Ray workers, from the CLI.

The same records (per account, byte for byte), summary blocks and exit codes as the local engine;
Ctrl-C, then ``--resume``. ``main`` runs in this process, on the session's Ray cluster
(``ray_cluster``): no Ray start of its own, so each scan costs seconds, not a Ray start.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from scanner.cli import ray_scan
from scanner.cli.main import main
from scanner.distributed import DriverEvent, UnitFinished, UnitStarted
from scanner.engine.stats import ScanStatistics
from scanner.scandir import ScanDirectory
from scanner.scandir.shard import shard_of

pytestmark = pytest.mark.usefixtures("ray_cluster")

ORG_ON_RAY = ("scan", "--simulate", "org-small", "--engine", "ray", "--workers", "2", "--quiet")


def records_by_account(root: Path) -> dict[str, list[bytes]]:
    """Every record line of a multi-account scan directory, sorted, per account."""
    lines: dict[str, list[bytes]] = {}
    for part in root.glob("account=*/region=*/part-*.jsonl"):
        account = part.parent.parent.name.removeprefix("account=")
        lines.setdefault(account, []).extend(part.read_bytes().splitlines())
    return {account: sorted(found) for account, found in lines.items()}


@pytest.fixture(scope="module")
def local_org(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The local engine's scan of the same organisation: the reference."""
    root = tmp_path_factory.mktemp("local")
    summary = root / "summary.json"
    assert main(["scan", "--simulate", "org-small", "--quiet", "--output-dir", str(root / "scan"),
                 "--summary", str(summary)]) == 0  # fmt: skip
    return root / "scan", orjson.loads(summary.read_bytes())


def test_two_ray_workers_scan_the_organisation_as_the_local_engine(
    local_org: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_dir, local_summary = local_org
    out, summary_path = tmp_path / "scan", tmp_path / "summary.json"
    shown: list[ScanStatistics] = []

    async def display(run: Any, stderr: Any, accounts: bool) -> None:  # what the terminal would show
        assert accounts
        while True:
            shown.append(run.statistics())
            await anyio.sleep(0.05)

    monkeypatch.setattr(ray_scan, "_show_progress", display)
    argv = [*ORG_ON_RAY, "--output-dir", str(out), "--summary", str(summary_path)]
    assert main([arg for arg in argv if arg != "--quiet"]) == 0
    assert {s.accounts_total for s in shown} == {11}
    assert [s.instances_done for s in shown] == sorted(s.instances_done for s in shown)
    assert [s.accounts_done for s in shown] == sorted(s.accounts_done for s in shown)
    assert any(s.instances_done > 0 for s in shown)
    expected = records_by_account(local_dir)
    assert len(expected) == 11  # org-small: 12 members, one not in a success status
    assert records_by_account(out) == expected
    summary = orjson.loads(summary_path.read_bytes())
    for key in ("complete", "records", "exit_code", "accounts", "skipped_accounts", "failures", "regions",
                "services", "missing_services"):  # fmt: skip
        assert summary[key] == local_summary[key], key
    assert summary["skipped_accounts"]
    assert all(entry["status"] for entry in summary["skipped_accounts"])
    assert summary["units"]["complete"] == sum(len(a["regions"]) for a in summary["accounts"].values())
    assert set(summary["workers"]) == {"0", "1"}
    # The same scan directory: its parameters, its units, its status.
    ours, theirs = ScanDirectory.open(out), ScanDirectory.open(local_dir)
    assert ours.params == theirs.params
    assert set(ours.entries()) == set(theirs.entries())
    assert ours.expected() == theirs.expected()
    assert ours.verify() == []
    assert main(["status", str(out)]) == 0


def test_ctrl_c_then_resume_on_ray(
    local_org: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_dir, local_summary = local_org
    out, summary_path = tmp_path / "scan", tmp_path / "summary.json"
    on_event = ray_scan._Run.on_event
    signalled: list[int] = []

    def interrupt_after_the_first_unit(run: Any, event: DriverEvent) -> None:
        on_event(run, event)
        if isinstance(event, UnitFinished) and not signalled:
            signalled.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the CLI's handler turns it into a clean stop

    monkeypatch.setattr(ray_scan._Run, "on_event", interrupt_after_the_first_unit)
    argv = [*ORG_ON_RAY, "--output-dir", str(out), "--summary", str(summary_path)]
    assert main(argv) == 130
    stopped = orjson.loads(summary_path.read_bytes())
    assert stopped["complete"] is False
    assert stopped["cancelled"] is True
    assert set(stopped["accounts"]) == set(local_summary["accounts"])
    directory = ScanDirectory.open(out)
    assert directory.verify() == []
    entries = directory.entries()
    units = len(ScanDirectory.open(local_dir).entries())
    assert 1 <= len(entries) < units
    assert all(entry.status == "complete" for entry in entries.values())
    assert main(["status", str(out)]) == 3

    monkeypatch.undo()
    started: list[str] = []
    original = ray_scan._Run.on_event

    def count_starts(run: Any, event: DriverEvent) -> None:
        original(run, event)
        if isinstance(event, UnitStarted):
            started.append(str(event.unit))

    monkeypatch.setattr(ray_scan._Run, "on_event", count_starts)
    assert main([*argv, "--resume"]) == 0
    assert len(started) == units - len(entries)  # only the units the cancelled run did not commit
    assert records_by_account(out) == records_by_account(local_dir)
    resumed = orjson.loads(summary_path.read_bytes())
    assert resumed["complete"] is True
    assert resumed["units"]["kept"] == len(entries)
    assert main(["status", str(out)]) == 0


def test_a_ray_shard_and_a_local_shard_make_the_whole_scan(
    local_org: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    local_dir, _ = local_org
    every_unit = set(ScanDirectory.open(local_dir).entries())
    out = tmp_path / "scan"
    assert main([*ORG_ON_RAY, "--output-dir", str(out), "--shard", "0/2"]) == 0
    first = set(ScanDirectory.open(out).entries())
    assert first == {unit for unit in every_unit if shard_of(unit, 2) == 0}
    assert main(["status", str(out)]) == 3  # the other shard's units are expected, and missing
    local_shard = ["scan", "--simulate", "org-small", "--quiet", "--output-dir", str(out), "--shard", "1/2"]
    # Accounts none of whose units fall in this shard are complete in it: nothing was asked of them.
    assert main(local_shard) == 0
    assert set(ScanDirectory.open(out).entries()) == every_unit
    assert records_by_account(out) == records_by_account(local_dir)
    assert main(["status", str(out)]) == 0
