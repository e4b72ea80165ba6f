"""``eas-scan scan --org`` / ``--accounts`` / ``--simulate org-small`` (issue 13's command line).

In-process (``cli.main``) against an organisation simulator served from a thread, and one
subprocess: exit codes, the summary's ``accounts`` / ``skipped_accounts`` / ``failures[].account``,
``AccountId`` in JSONL and CSV, accounts-file errors (exit 2 naming the file, line and fix, with
nothing sent), flags that cannot go together; no secret in any output.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from scanner import cli
from scanner.simulator import OrgSpec, Simulator, account_key_digests
from tests.cli.conftest import Run, ThreadedSimulator, run_process
from tests.org.members import members_by_flag

KNOBS = OrgSpec(members=8, total_instances=400, non_success=2, missing_role=1, eas_denied=1)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


@pytest.fixture(scope="module")
def org(portal: BlockingPortal) -> Iterator[ThreadedSimulator]:
    manager = portal.wrap_async_context_manager(Simulator(org=KNOBS, seed=9))
    sim = manager.__enter__()
    try:
        yield ThreadedSimulator(portal, sim)
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def run_cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        capsysbinary.readouterr()
        code = cli.main(list(argv))
        out, err = capsysbinary.readouterr()
        return Run(code, out, err.decode())

    return run


@pytest.fixture(autouse=True)
def _credentials(org: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in org.env().items():
        monkeypatch.setenv(name, value)


def org_args(org: ThreadedSimulator) -> list[str]:
    sim = org.sim
    assert sim.sts_endpoint is not None
    assert sim.resourcemanager_endpoint is not None
    return [
        *org.endpoint_args(),
        "--sts-endpoint",
        sim.sts_endpoint,
        "--resourcemanager-endpoint",
        sim.resourcemanager_endpoint,
        "--no-progress",
    ]


def flags(org: ThreadedSimulator) -> dict[str, list[str]]:
    return members_by_flag(org.sim)


def digests(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [(r["AccountId"], r["ClusterId"], r["ServiceName"], r["InstanceName"]) for r in records]
    return {a: d.to_dict() for a, d in account_key_digests(keys).items()}


def truth(org: ThreadedSimulator, accounts: list[str]) -> dict[str, dict[str, Any]]:
    every = org.call(org.sim.org_digests)
    return {a: every[a].to_dict() for a in accounts if every[a].count}


def test_org_scan_incomplete_accounts_named_exit_3(
    org: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    summary_path = tmp_path / "run.json"
    run = run_cli("scan", "--org", *org_args(org), "--summary", str(summary_path))
    assert run.code == 3, run.stderr
    f = flags(org)
    records = run.records()
    assert digests(records) == truth(org, f["ok"])
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["exit_code"] == 3
    assert summary["complete"] is False
    assert [s["id"] for s in summary["skipped_accounts"]] == f["skipped"]
    accounts = summary["accounts"]
    assert set(accounts) == set(f["ok"] + f["missing_role"] + f["denied"])
    assert all(accounts[a]["complete"] for a in f["ok"])
    assert accounts[f["missing_role"][0]]["error"].startswith("EntityNotExist.Role")
    assert "Forbidden.RAM" in accounts[f["denied"][0]]["error"]
    assert summary["failures"]
    assert all("account" in failure for failure in summary["failures"])
    assert "accounts: " in run.stderr
    everything = run.stdout.decode() + run.stderr + summary_path.read_text()
    assert org.sim.access_key_secret not in everything


def test_include_exclude_and_csv_account_column(org: ThreadedSimulator, run_cli: Callable[..., Run]) -> None:
    ok = flags(org)["ok"]
    run = run_cli(
        "scan",
        "--org",
        *org_args(org),
        "--include-accounts",
        ",".join(ok[:3]),
        "--exclude-accounts",
        ok[0],
        "--format",
        "csv",
        "--concurrency-per-account",
        "4",
        "--accounts-in-flight",
        "1",
    )
    assert run.code == 0, run.stderr
    rows = list(csv.reader(io.StringIO(run.stdout.decode())))
    assert rows[0][:3] == ["AccountId", "ClusterId", "ServiceName"]
    assert {row[0] for row in rows[1:]} == set(ok[1:3])
    assert len(rows) - 1 == sum(d["count"] for d in truth(org, ok[1:3]).values())


def test_accounts_file(org: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path) -> None:
    ok = flags(org)["ok"]
    region = org.regions[0]
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[defaults]\nregions = ["{region}"]\n\n'
        f'[[account]]\nid = "{ok[0]}"\nname = "prod"\n\n'
        f'[[account]]\nid = "{ok[1]}"\nregions = {orjson.dumps(org.regions).decode()}\n'
    )
    summary_path = tmp_path / "run.json"
    run = run_cli("scan", "--accounts", str(path), *org_args(org), "--summary", str(summary_path))
    assert run.code == 0, run.stderr
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["accounts"][ok[0]]["name"] == "prod"
    assert list(summary["accounts"][ok[0]]["regions"]) == [region]
    assert set(summary["accounts"][ok[1]]["regions"]) == set(org.regions)
    assert summary["skipped_accounts"] == []
    records = run.records()
    assert {r["ClusterId"] for r in records if r["AccountId"] == ok[0]} <= {region}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[account]]\nid = 1234567890123456\n", "line 2: id must be a string"),
        ('[[account]]\nid = "1234567890123456"\nrole = "x"\n', "line 3: unknown key 'role'"),
        ('[[account]]\nid = "1"\n[[account]]\nid = "1"\n', "line 4: account 1 is listed twice"),
        ("[[account]\n", "line 1: not valid TOML"),
    ],
)
def test_a_malformed_accounts_file_is_exit_2_naming_file_line_and_fix(
    org: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    org.reset_counters()
    before = org.call(org.sim.org_info)
    run = run_cli("scan", "--accounts", str(path), *org_args(org))
    assert run.code == 2
    assert f"{path}, {expected}" in run.stderr
    assert run.stdout == b""
    assert org.counters().total_requests == 0
    after = org.call(org.sim.org_info)
    assert after == before  # no AssumeRole, no ListAccounts


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--org", "--accounts", "a.toml"], "--org and --accounts cannot be combined"),
        (["--org-folder", "fd-1"], "--org-folder needs --org"),
        (["--role-name", "Reader"], "--role-name needs --org or --accounts"),
        (["--org", "--role-duration", "60"], "--role-duration must be from 900 to 43200"),
        (["--simulate", "small", "--org"], "--simulate small is one account"),
        (["--simulate", "org-small", "--accounts", "a.toml"], "drop --accounts"),
        (["--org", "--include-accounts", "12a"], "included account id"),
    ],
)
def test_flags_that_cannot_go_together_are_exit_2(
    run_cli: Callable[..., Run], argv: list[str], expected: str
) -> None:
    run = run_cli("scan", *argv, "--no-progress")
    assert run.code == 2
    assert expected in run.stderr


def test_simulate_org_small_in_a_subprocess(portal: BlockingPortal, tmp_path: Path) -> None:
    out, summary_path = tmp_path / "org.jsonl", tmp_path / "run.json"
    done = run_process(["scan", "--simulate", "org-small", "-o", str(out), "--summary", str(summary_path)])
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # The same organisation (same preset, same default seed), for its ground truth.
    with portal.wrap_async_context_manager(Simulator(preset="org-small")) as same:
        expected = {a: d.to_dict() for a, d in portal.call(same.org_digests).items() if d.count}
    assert digests(records) == expected
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["complete"] is True
    assert len(summary["skipped_accounts"]) == 1
    assert set(summary["accounts"]) == set(expected)


def test_quiet_names_the_account_of_the_first_failure(
    org: ThreadedSimulator, run_cli: Callable[..., Run]
) -> None:
    f = flags(org)
    run = run_cli("scan", "--org", *org_args(org), "--quiet", "--include-accounts", f["missing_role"][0])
    assert run.code == 1  # the only account could not be scanned
    run = run_cli(
        "scan", "--org", *org_args(org), "--quiet",
        "--include-accounts", ",".join([f["ok"][0], f["missing_role"][0]]),
    )  # fmt: skip
    assert run.code == 3
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("eas-scan: incomplete: 1 failure(s), first ")
    assert f"{f['missing_role'][0]}/-: EntityNotExist.Role" in line


def test_shards_of_an_org_scan_are_each_complete_and_together_whole(
    org: ThreadedSimulator, run_cli: Callable[..., Run], tmp_path: Path
) -> None:
    """An account none of whose (account, region) units falls in a shard is complete in that shard:
    nothing was asked of it there (it was once counted incomplete, and every shard exited 3)."""
    ok = flags(org)["ok"]
    out = tmp_path / "scan"
    for index in range(4):  # four shards of a few accounts: some own none of an account's regions
        summary = tmp_path / f"s{index}.json"
        run = run_cli(
            "scan", "--org", *org_args(org), "--include-accounts", ",".join(ok), "--output-dir", str(out),
            "--shard", f"{index}/4", "--summary", str(summary),
        )  # fmt: skip
        assert run.code == 0, run.stderr
        document = orjson.loads(summary.read_bytes())
        assert document["complete"] is True
        assert all(account["complete"] for account in document["accounts"].values())
    assert run_cli("status", str(out)).code == 0  # the four shards make the whole scan
