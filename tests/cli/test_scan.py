"""``eas-scan scan`` in-process (``cli.main(argv)``) against the simulator: every flag reaches the
API and shows in what is written, both formats exactly, the summary file, the exit codes."""

from __future__ import annotations

import csv
import errno
import functools
import gc
import io
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

import anyio
import orjson
import pytest
from rich.console import Console

from scanner import cli
from scanner.eas.params import INSTANCE_FIELDS
from scanner.engine.stats import RegionStatistics, ScanStatistics
from scanner.gctuning import BATCH_GC_THRESHOLD
from scanner.output.progress import LogProgress
from scanner.simulator import FaultConfig, Fleet
from scanner.simulator.spec import preset as preset_spec
from tests import netguard
from tests.cli.conftest import Key, Run, ThreadedSimulator, assert_records_exact, key_of
from tests.output.fakefs import FaultyFileSystem

RunCli = Callable[..., Run]


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch, shared_sim: ThreadedSimulator) -> None:
    for name, value in shared_sim.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def own_creds(monkeypatch: pytest.MonkeyPatch, sim: ThreadedSimulator) -> None:
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)


# --- output ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("creds")
def test_jsonl_on_stdout_is_exactly_the_fleet(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    result = run_cli("scan", *shared_sim.endpoint_args())
    assert result.code == cli.EXIT_COMPLETE, result.stderr
    assert result.stdout.endswith(b"\n")
    assert_records_exact(result.records(), shared_sim.expected())
    # Not a terminal: the summary table, and no live progress display.
    assert "complete: 1,000 instances" in result.stderr
    assert "req/s" not in result.stderr


@pytest.mark.usefixtures("creds")
def test_the_scan_runs_with_the_batch_gc_threshold(shared_sim: ThreadedSimulator) -> None:
    class Spy(io.BytesIO):
        """Records the GC threshold at each write of records: while the scan runs."""

        seen: ClassVar[list[tuple[int, int, int]]] = []

        def write(self, data: Any, /) -> int:
            self.seen.append(gc.get_threshold())
            return super().write(data)

    before = gc.get_threshold()
    args = cli.build_parser().parse_args(["scan", *shared_sim.endpoint_args(), "--quiet"])
    stdout = Spy()
    assert cli.run_scan(args, stdout=stdout, stderr=Console(file=io.StringIO())) == cli.EXIT_COMPLETE
    assert len(stdout.getvalue().splitlines()) == len(shared_sim.expected())
    assert Spy.seen
    assert all(threshold[0] >= BATCH_GC_THRESHOLD for threshold in Spy.seen)
    assert gc.get_threshold() == before


@pytest.mark.usefixtures("creds")
def test_csv_has_a_column_per_field_and_parses_back(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "fleet.csv"
    result = run_cli("scan", *shared_sim.endpoint_args(), "--format", "csv", "-o", str(out))
    assert result.code == 0, result.stderr
    assert result.stdout == b""
    with out.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert header == ["ClusterId", "ServiceName", *INSTANCE_FIELDS]
    expected = shared_sim.expected()
    assert len(rows) == len(expected)

    # Each cell read back by the documented rules (the exact text is in tests/output/test_sinks.py).
    seen: set[type] = set()
    for row in rows:
        record = expected[(row["ClusterId"], row["ServiceName"], row["InstanceName"])]
        for name in header:
            value, text = record.get(name), row[name]
            seen.add(type(value))
            if value is None:
                assert text == "", name
            elif isinstance(value, bool):
                assert text == ("true" if value else "false"), name
            elif isinstance(value, dict | list):
                assert orjson.loads(text) == value, name
            elif isinstance(value, int | float):
                assert type(value)(text) == value, name
            else:
                assert text == value, name
    assert {str, bool, int, list} <= seen  # the fleet exercises each rule
    nested = [row["LastState"] for row in rows if row["LastState"]]
    assert nested, "the fleet has instances with a LastState"
    assert all(isinstance(orjson.loads(text), list) for text in nested)


@pytest.mark.usefixtures("creds")
def test_output_file_and_summary_file(run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path) -> None:
    out, summary_path = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    out.write_text("an earlier inventory\n")
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary_path))
    assert result.code == 0, result.stderr
    assert result.stdout == b""
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert_records_exact(records, shared_sim.expected())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]  # no temp file left

    summary = orjson.loads(summary_path.read_bytes())
    assert_summary_shape(summary)
    by_region = Counter(record["ClusterId"] for record in records)
    services = {
        region: len({r["ServiceName"] for r in records if r["ClusterId"] == region}) for region in by_region
    }
    assert summary["complete"] is True
    assert summary["records"] == len(records)
    assert summary["requests"] == shared_sim.counters().total_requests
    assert summary["retries"] == summary["throttled"] == 0
    assert summary["failures"] == []
    assert summary["exit_code"] == 0
    for region, counts in summary["regions"].items():
        assert counts["instances"] == by_region[region]
        assert counts["services"] >= services[region]  # stopped services have no instances
        assert counts["complete"] is True
        assert counts["error"] is None


def assert_summary_shape(summary: dict[str, Any]) -> None:
    """The JSON shape the issue fixes (more keys may follow)."""
    types = {
        "complete": bool,
        "records": int,
        "duration_s": float,
        "requests": int,
        "retries": int,
        "throttled": int,
        "regions": dict,
        "failures": list,
    }
    for name, kind in types.items():
        assert isinstance(summary[name], kind), name
    for region in summary["regions"].values():
        assert set(region) == {"services", "instances", "complete", "error"}
        assert isinstance(region["services"], int)
        assert isinstance(region["instances"], int)
        assert isinstance(region["complete"], bool)
        assert region["error"] is None or isinstance(region["error"], str)
    for failure in summary["failures"]:
        assert set(failure) == {"region", "service", "code", "message"}


# --- instance filters: each reaches the API ---------------------------------------------------------


def _first(expected: dict[Key, dict[str, Any]], field: str) -> Any:
    return next(iter(expected.values()))[field]


def _commonest(expected: dict[Key, dict[str, Any]], field: str) -> Any:
    return Counter(record[field] for record in expected.values()).most_common(1)[0][0]


def _rarest(expected: dict[Key, dict[str, Any]], field: str) -> Any:
    return Counter(record[field] for record in expected.values()).most_common()[-1][0]


# (flag, how to pick a value from the ground truth, which records it keeps)
FILTERS: list[
    tuple[str, Callable[[dict[Key, dict[str, Any]]], str], Callable[[dict[str, Any], str], bool]]
] = [
    (
        "--filter",
        lambda e: _first(e, "HostIP").rsplit(".", 1)[0],
        lambda r, v: any(
            v.lower() in r[f].lower() for f in ("InstanceName", "InnerIP", "HostIP", "InstanceType")
        ),
    ),
    ("--instance-status", lambda e: _rarest(e, "Status"), lambda r, v: r["Status"] == v),
    ("--instance-type", lambda e: _commonest(e, "InstanceType"), lambda r, v: r["InstanceType"] == v),
    ("--instance-ip", lambda e: _first(e, "InnerIP"), lambda r, v: r["InnerIP"] == v),
    ("--instance-name", lambda e: _first(e, "InstanceName"), lambda r, v: r["InstanceName"] == v),
    ("--host-ip", lambda e: _first(e, "HostIP"), lambda r, v: r["HostIP"] == v),
    ("--resource-type", lambda e: "DedicatedResource", lambda r, v: r["ResourceType"] == v),
    ("--role", lambda e: "Queue", lambda r, v: r["Role"] == v),
    ("--is-spot", lambda e: "true", lambda r, v: r["IsSpot"] is True),
    ("--is-spot", lambda e: "False", lambda r, v: r["IsSpot"] is False),
]


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(
    ("flag", "pick", "keeps"), FILTERS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FILTERS)]
)
def test_instance_filter_reaches_the_api(
    run_cli: RunCli,
    shared_sim: ThreadedSimulator,
    flag: str,
    pick: Callable[[dict[Key, dict[str, Any]]], str],
    keeps: Callable[[dict[str, Any], str], bool],
) -> None:
    everything = shared_sim.expected()
    value = pick(everything)
    wanted = {key: record for key, record in everything.items() if keeps(record, value)}
    assert 0 < len(wanted) < len(everything), "the chosen value must select a proper subset"
    result = run_cli("scan", *shared_sim.endpoint_args(), flag, value, "--quiet")
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert_records_exact(result.records(), wanted)


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_and_order_reach_the_api(run_cli: RunCli, shared_sim: ThreadedSimulator, order: str) -> None:
    result = run_cli("scan", *shared_sim.endpoint_args(), "--sort", "StartTime", "--order", order, "--quiet")
    assert result.code == 0, result.stderr
    records = result.records()
    assert_records_exact(records, shared_sim.expected())
    # A page arrives whole, so within a service of one page the API's order shows.
    by_service: dict[tuple[str, str], list[str]] = {}
    for record in records:
        by_service.setdefault((record["ClusterId"], record["ServiceName"]), []).append(record["StartTime"])
    one_page = [times for times in by_service.values() if 1 < len(times) <= 100 and len(set(times)) > 1]
    assert one_page
    for times in one_page:
        assert times == sorted(times, reverse=order == "desc")


@pytest.mark.usefixtures("creds")
def test_page_size_reaches_the_api(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    expected = shared_sim.expected()
    per_service = Counter((region, service) for region, service, _ in expected)
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "--page-size", "10", "--quiet")
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), expected)
    pages = sum(math.ceil(count / 10) for count in per_service.values())
    assert shared_sim.counters().requests_for("ListServiceInstances") >= pages


@pytest.mark.usefixtures("creds")
def test_services_and_service_filter(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    expected = shared_sim.expected()
    names = sorted({service for _, service, _ in expected})
    chosen = names[:2]
    result = run_cli("scan", *shared_sim.endpoint_args(), "--services", ",".join(chosen), "--quiet")
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), {k: v for k, v in expected.items() if k[1] in chosen})

    text = names[0].split("_")[0]
    wanted = {k: v for k, v in expected.items() if text.lower() in k[1].lower()}
    assert 0 < len(wanted) < len(expected)
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "--service-filter", text, "--quiet")
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), wanted)
    listed = {service for _, service, _ in wanted}
    # Only the matching services were asked for instances: the filter went to ListServices.
    assert shared_sim.counters().requests_for("ListServiceInstances") >= len(listed)
    assert shared_sim.counters().requests_for("ListServiceInstances") < len(set(per_service(expected)))


def per_service(expected: dict[Key, dict[str, Any]]) -> set[tuple[str, str]]:
    return {(region, service) for region, service, _ in expected}


@pytest.mark.usefixtures("creds")
def test_regions_limit_the_scan(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    first, second = shared_sim.regions
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "--regions", second, "--quiet")
    assert result.code == 0, result.stderr
    expected = shared_sim.expected()
    assert_records_exact(result.records(), {k: v for k, v in expected.items() if k[0] == second})
    assert first not in shared_sim.counters().requests

    # "all" asks DescribeRegions (at the first overridden region) and scans what it lists.
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "--regions", "all", "--quiet")
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), expected)
    assert shared_sim.counters().requests_for("DescribeRegions") == 1


@pytest.mark.usefixtures("creds")
def test_concurrency_bounds_requests_in_flight(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    shared_sim.set_faults(latency_ms=5)  # long enough for requests to overlap
    try:
        shared_sim.reset_counters()
        result = run_cli("scan", *shared_sim.endpoint_args(), "--concurrency", "3", "--quiet")
    finally:
        shared_sim.set_faults(FaultConfig())
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), shared_sim.expected())
    assert 1 <= shared_sim.counters().peak_concurrency <= 3


@pytest.mark.usefixtures("creds")
def test_rate_limit_caps_requests_per_second(run_cli: RunCli, shared_sim: ThreadedSimulator) -> None:
    first = shared_sim.regions[0]
    shared_sim.reset_counters()
    args = [*shared_sim.endpoint_args([first]), "--rate-limit", "20", "--page-size", "20", "--quiet"]
    result = run_cli("scan", *args)
    assert result.code == 0, result.stderr
    counters = shared_sim.counters()
    # Unlimited, these ~45 requests start within a second (peak 45); at 20/s they take two.
    assert counters.requests_for("ListServiceInstances") >= 35
    # One second window: 20, one token of burst, and a little arrival jitter.
    assert counters.peak_rate[first]["ListServiceInstances"] <= 23


@pytest.mark.usefixtures("own_creds")
def test_max_attempts_and_exit_3_on_failed_services(
    run_cli: RunCli, sim: ThreadedSimulator, tmp_path: Path
) -> None:
    broken, healthy = sim.regions
    services_in_broken = len({s for r, s, _ in sim.expected() if r == broken})
    sim.set_faults(
        internal_error_rate=1.0, regions=frozenset({broken}), actions=frozenset({"ListServiceInstances"})
    )
    summary_path = tmp_path / "run.json"
    result = run_cli("scan", *sim.endpoint_args(), "--max-attempts", "2", "--summary", str(summary_path))
    assert result.code == cli.EXIT_INCOMPLETE, result.stderr
    counters = sim.counters()
    assert counters.requests_for("ListServiceInstances", broken) == 2 * services_in_broken
    assert {record["ClusterId"] for record in result.records()} == {healthy}
    summary = orjson.loads(summary_path.read_bytes())
    assert_summary_shape(summary)
    assert summary["complete"] is False
    assert summary["exit_code"] == 3
    assert summary["regions"][healthy]["complete"] is True
    assert summary["regions"][broken]["complete"] is False
    assert summary["retries"] == services_in_broken
    assert len(summary["failures"]) == services_in_broken
    assert {f["code"] for f in summary["failures"]} == {"InternalError"}
    assert all(f["region"] == broken and f["service"] for f in summary["failures"])
    assert "INCOMPLETE" in result.stderr


@pytest.mark.usefixtures("own_creds")
def test_timeout_gives_up_on_slow_requests(run_cli: RunCli, sim: ThreadedSimulator) -> None:
    slow, fast = sim.regions
    sim.set_faults(slow_rate=1.0, slow_ms=800, regions=frozenset({slow}))
    result = run_cli("scan", *sim.endpoint_args(), "--timeout", "0.2", "--max-attempts", "1")
    assert result.code == cli.EXIT_INCOMPLETE, result.stderr
    assert {record["ClusterId"] for record in result.records()} == {fast}
    assert f"failed {slow}" in result.stderr


@pytest.mark.usefixtures("own_creds")
def test_forbidden_region_exits_3(run_cli: RunCli, sim: ThreadedSimulator, tmp_path: Path) -> None:
    forbidden, allowed = sim.regions
    sim.forbid_region(forbidden)
    summary_path = tmp_path / "run.json"
    result = run_cli("scan", *sim.endpoint_args(), "--summary", str(summary_path))
    assert result.code == cli.EXIT_INCOMPLETE, result.stderr
    assert_records_exact(result.records(), {k: v for k, v in sim.expected().items() if k[0] == allowed})
    summary = orjson.loads(summary_path.read_bytes())
    assert_summary_shape(summary)
    assert summary["regions"][forbidden]["complete"] is False
    assert "Forbidden" in summary["regions"][forbidden]["error"]
    assert [f["region"] for f in summary["failures"]] == [forbidden]
    assert forbidden in result.stderr
    assert "Forbidden" in result.stderr


@pytest.mark.usefixtures("own_creds")
def test_every_region_refused_is_fatal_and_keeps_the_old_file(
    run_cli: RunCli, sim: ThreadedSimulator, tmp_path: Path
) -> None:
    for region in sim.regions:
        sim.forbid_region(region)
    out, summary_path = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    out.write_bytes(b"the previous inventory\n")
    result = run_cli("scan", *sim.endpoint_args(), "-o", str(out), "--summary", str(summary_path))
    assert result.code == cli.EXIT_FATAL, result.stderr
    assert out.read_bytes() == b"the previous inventory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]
    summary = orjson.loads(summary_path.read_bytes())
    assert_summary_shape(summary)
    assert summary["complete"] is False
    assert summary["exit_code"] == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("eas-scan: error:")]
    assert len(error_lines) == 1
    assert "Forbidden" in error_lines[0]


# --- credentials --------------------------------------------------------------------------------------


def test_no_credentials_is_fatal_and_says_where_it_looked(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    shared_sim.reset_counters()
    summary_path = tmp_path / "run.json"
    result = run_cli("scan", *shared_sim.endpoint_args(), "--summary", str(summary_path))
    assert result.code == cli.EXIT_FATAL
    assert result.stdout == b""
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.stderr
    assert ".aliyun/config.json" in result.stderr
    assert "--simulate" in result.stderr
    assert shared_sim.counters().total_requests == 0
    summary = orjson.loads(summary_path.read_bytes())
    assert_summary_shape(summary)
    assert summary["complete"] is False
    assert summary["records"] == summary["requests"] == 0
    assert summary["exit_code"] == cli.EXIT_FATAL
    assert "no Alibaba Cloud credentials found" in summary["error"]


def test_profile_from_the_aliyun_config_file(
    run_cli: RunCli, shared_sim: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".aliyun").mkdir()
    profile = {
        "name": "sim",
        "mode": "AK",
        "access_key_id": shared_sim.sim.access_key_id,
        "access_key_secret": shared_sim.sim.access_key_secret,
        "region_id": "cn-hangzhou",
    }
    config = {
        "current": "other",
        "profiles": [{**profile, "name": "other", "access_key_id": "LTAIwrong00000000000"}, profile],
    }
    (tmp_path / ".aliyun" / "config.json").write_bytes(orjson.dumps(config))
    result = run_cli("scan", *shared_sim.endpoint_args(), "--profile", "sim", "--quiet")
    assert result.code == 0, result.stderr
    assert_records_exact(result.records(), shared_sim.expected())

    result = run_cli("scan", *shared_sim.endpoint_args(), "--profile", "nope")
    assert result.code == cli.EXIT_FATAL
    assert "profile 'nope' not found" in result.stderr
    assert "--profile" in result.stderr


def test_broken_profile_file(
    run_cli: RunCli, shared_sim: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".aliyun").mkdir()
    (tmp_path / ".aliyun" / "config.json").write_text("{not json")
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "--profile", "prod")
    assert result.code == cli.EXIT_FATAL
    error = result.stderr.strip()
    assert error.count("\n") == 0
    assert str(tmp_path / ".aliyun" / "config.json") in error
    assert "not valid JSON" in error
    assert shared_sim.counters().total_requests == 0


@pytest.mark.usefixtures("creds")
def test_verbose_logs_the_key_id_masked_and_never_the_secret(
    run_cli: RunCli, shared_sim: ThreadedSimulator
) -> None:
    result = run_cli("scan", *shared_sim.endpoint_args(), "-v")
    assert result.code == 0
    key_id, secret = shared_sim.sim.access_key_id, shared_sim.sim.access_key_secret
    assert f"{key_id[:4]}****{key_id[-4:]}" in result.stderr
    assert key_id not in result.stderr
    assert secret not in result.stderr
    quiet = run_cli("scan", *shared_sim.endpoint_args())
    assert "****" not in quiet.stderr


# --- bad input: one line, names the flag or file and the fix, nothing sent --------------------------


BAD_INPUT = [
    (["--endpoint", "cn-shanghai"], "--endpoint takes REGION=URL"),
    (["--endpoint", "=http://127.0.0.1:1"], "--endpoint takes REGION=URL"),
    (["--endpoint", "cn-hangzhou=http://127.0.0.1:1"], "--endpoint gives cn-hangzhou twice"),
    (["--endpoint", "bad region!=http://127.0.0.1:1"], "bad region!"),
    (["--endpoint", "cn-beijing=ftp://127.0.0.1:1"], "ftp://"),
    (["--regions", "cn-hangzhou,,cn-shanghai"], "--regions"),
    (["--regions", "not a region"], "not a region"),
    (["--services", "a,,b"], "--services"),
    (["--resource-type", "Shared"], "--resource-type"),
    (["--role", "Boss"], "--role"),
    (["--is-spot", "maybe"], "--is-spot takes true or false"),
    (["--sort", "Name"], "--sort"),
    (["--order", "up"], "--order"),
    (["--page-size", "0"], "--page-size must be positive"),
    (["--page-size", "101"], "--page-size must be at most 100"),
    (["--concurrency", "many"], "--concurrency must be a positive number"),
    (["--rate-limit", "-1"], "--rate-limit must be positive"),
    (["--max-attempts", "0"], "--max-attempts must be positive"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--format", "xml"], "--format"),
    (["--endpoint-type", "private"], "--endpoint-type"),
    (["--simulate", "huge"], "--simulate"),
    (["--simulate", "small"], "--simulate and --endpoint"),
    (["--no-such-flag"], "--no-such-flag"),
    (["-o", "/nonexistent-folder/fleet.jsonl"], "/nonexistent-folder does not exist"),
    (["--summary", "/nonexistent-folder/run.json"], "/nonexistent-folder does not exist"),
]


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_before_any_request(
    run_cli: RunCli, shared_sim: ThreadedSimulator, args: list[str], message: str
) -> None:
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), *args)
    assert result.code == cli.EXIT_USAGE
    assert result.stdout == b""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "error" in lines[0]
    assert shared_sim.counters().total_requests == 0


@pytest.mark.usefixtures("creds")
def test_output_path_is_checked_before_any_request(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    for target, message in [
        (tmp_path, "is a directory"),
        (tmp_path / "a-file" / "fleet.jsonl", "does not exist"),
    ]:
        shared_sim.reset_counters()
        result = run_cli("scan", *shared_sim.endpoint_args(), "-o", str(target))
        assert result.code == cli.EXIT_USAGE
        assert message in result.stderr
        assert "-o" in result.stderr
        assert shared_sim.counters().total_requests == 0


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize("case", ["directory", "no folder", "read-only folder", "the -o file"])
def test_summary_path_is_checked_before_any_request(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path, case: str
) -> None:
    out = tmp_path / "fleet.jsonl"
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "a-file").write_text("")
    summary, message = {
        "directory": (folder, f"summary path {folder} is a directory: give a file name"),
        "no folder": (
            folder / "a-file" / "run.json",
            f"summary folder {folder / 'a-file'} does not exist: create it or choose another --summary path",
        ),
        "read-only folder": (folder / "run.json", f"cannot write to {folder}: choose another --summary path"),
        "the -o file": (
            tmp_path / "." / "fleet.jsonl",
            f"--summary and -o both name {tmp_path / '.' / 'fleet.jsonl'}: the summary would replace "
            "the records; choose another --summary path",
        ),
    }[case]
    fs = FaultyFileSystem()
    if case == "read-only folder":
        # Tests may run as root, who can write anywhere, so the permission check itself is faked.
        fs.read_only = {folder}
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary), fs=fs)
    assert result.code == cli.EXIT_USAGE
    assert result.stderr == f"eas-scan: error: {message}\n"
    assert shared_sim.counters().total_requests == 0
    assert not out.exists()


def _replace_by_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _after_the_scan(fs: FaultyFileSystem, change: Callable[[], object]) -> None:
    """Run ``change`` once the scan is over, before its outputs are saved (at the records' fsync)."""
    fs.before("fsync", change)


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(
    "case", ["folder removed", "now a directory", "permission denied", "disk full", "temporary file stuck"]
)
def test_a_summary_that_cannot_be_written_keeps_the_records(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path, case: str
) -> None:
    out = tmp_path / "fleet.jsonl"
    out.write_text("an earlier inventory\n")
    folder = tmp_path / "reports"
    folder.mkdir()
    summary = folder / "run.json"
    previous = b'{"an": "earlier summary"}\n'
    summary.write_bytes(previous)
    fs = FaultyFileSystem()
    if case == "folder removed":
        _after_the_scan(fs, lambda: shutil.rmtree(folder))
        message = f"summary folder {folder} does not exist: create it or choose another --summary path"
    elif case == "now a directory":
        _after_the_scan(fs, functools.partial(_replace_by_a_folder, summary))
        message = f"summary path {summary} is a directory: give a file name"
    elif case == "permission denied":
        fs.fail("mkstemp", errno.EACCES, call=2)  # the records' temporary file is the first
        message = f"cannot write the summary to {summary} (Permission denied): choose another --summary path"
    elif case == "disk full":
        # The records' file (the first opened) has room; only the summary meets the full disk.
        fs.full_disk = {2}
        message = (
            f"cannot write the summary to {summary} (No space left on device): "
            "free some space or choose another --summary path"
        )
    else:  # "temporary file stuck"
        fs.full_disk = {2}
        fs.fail("unlink", errno.EROFS)
        message = (
            f"cannot write the summary to {summary} (No space left on device): "
            "free some space or choose another --summary path; "
            "its temporary file {stuck} could not be removed"
        )

    result = run_cli(
        "scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary), "--quiet", fs=fs
    )

    assert result.code == cli.EXIT_FATAL
    if case == "temporary file stuck":
        [stuck] = [p for p in folder.iterdir() if p != summary]
        message = message.replace("{stuck}", str(stuck))  # the user is told what to clean up
    assert result.stderr == (
        f"eas-scan: error: {message}; the records were written, only the summary is missing\n"
    )
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert_records_exact(records, shared_sim.expected())
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["fleet.jsonl"]
    if case in ("permission denied", "disk full"):
        # Like the records, a summary that cannot be written leaves the previous one, and no temp file.
        assert summary.read_bytes() == previous
        assert [p.name for p in folder.iterdir()] == ["run.json"]
    elif case == "temporary file stuck":
        assert summary.read_bytes() == previous


@pytest.mark.usefixtures("own_creds")
def test_an_incomplete_scan_whose_summary_fails_exits_1_and_still_shows_the_table(
    run_cli: RunCli, sim: ThreadedSimulator, tmp_path: Path
) -> None:
    forbidden = sim.regions[0]
    sim.forbid_region(forbidden)
    out, summary = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    fs = FaultyFileSystem()
    fs.full_disk = {2}  # the summary's file, opened after the scan

    result = run_cli("scan", *sim.endpoint_args(), "-o", str(out), "--summary", str(summary), fs=fs)

    assert result.code == cli.EXIT_FATAL  # not 3: the run did not deliver all it was asked for
    assert "Traceback" not in result.stderr
    assert forbidden in result.stderr  # the table on stderr is now the only copy of the summary
    errors = [line for line in result.stderr.splitlines() if line.startswith("eas-scan: error:")]
    assert errors == [
        f"eas-scan: error: cannot write the summary to {summary} (No space left on device): "
        "free some space or choose another --summary path; the records were written, only the "
        "summary is missing"
    ]
    assert result.stderr.endswith(errors[0] + "\n")
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert_records_exact(records, {k: v for k, v in sim.expected().items() if k[0] != forbidden})
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.jsonl"]


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(
    "case",
    [
        "disk full",
        "summary too",
        "fsync fails",
        "rename across devices",
        "now a directory",
        "folder removed",
        "temporary file stuck",
    ],
)
def test_records_that_cannot_be_saved_at_the_end_leave_the_previous_file(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path, case: str
) -> None:
    # One region: every record fits the file's buffer, so nothing reaches the disk before the commit.
    region = shared_sim.regions[0]
    folder = tmp_path / "inventory"
    folder.mkdir()
    out, summary = folder / "fleet.jsonl", tmp_path / "run.json"
    previous, previous_summary = b"an earlier inventory\n", b'{"an": "earlier summary"}\n'
    out.write_bytes(previous)
    summary.write_bytes(previous_summary)
    problem, fix = {
        "disk full": ("No space left on device", "free some space or choose another -o path"),
        "summary too": ("No space left on device", "free some space or choose another -o path"),
        "fsync fails": ("Input/output error", "choose another -o path"),
        "temporary file stuck": ("Input/output error", "choose another -o path"),
        "rename across devices": ("Invalid cross-device link", "choose another -o path"),
        "now a directory": ("Is a directory", "give a file name or choose another -o path"),
        "folder removed": ("No such file or directory", "create its folder or choose another -o path"),
    }[case]
    fs = FaultyFileSystem()
    if case == "disk full":
        fs.full_disk = {1}  # the records' file; there is room again for the small summary
    elif case == "summary too":
        fs.full_disk = {1, 2}
    elif case == "fsync fails":
        fs.fail("fsync", errno.EIO, call=1)
    elif case == "temporary file stuck":
        # After EIO, a file system is often remounted read-only: the temporary file cannot go.
        fs.fail("fsync", errno.EIO, call=1)
        fs.fail("unlink", errno.EROFS)
    elif case == "rename across devices":
        fs.fail("replace", errno.EXDEV, call=1)
    elif case == "now a directory":
        _after_the_scan(fs, functools.partial(_replace_by_a_folder, out))
    else:
        _after_the_scan(fs, lambda: shutil.rmtree(folder))

    argv = ["scan", *shared_sim.endpoint_args([region]), "-o", str(out), "--summary", str(summary)]
    result = run_cli(*argv, "--quiet", fs=fs)

    assert result.code == cli.EXIT_FATAL
    message = f"cannot write to {out} ({problem}): the records were not saved; {fix}"
    if case == "temporary file stuck":
        [stuck] = [p for p in folder.iterdir() if p != out]
        message += f"; its temporary file {stuck} could not be removed"  # the user is told what to clean
    expected_stderr = f"eas-scan: error: {message}\n"
    if case == "summary too":
        expected_stderr += (
            f"eas-scan: error: cannot write the summary to {summary} (No space left on device): "
            "free some space or choose another --summary path\n"
        )
    assert result.stderr == expected_stderr  # no traceback: one line per file that failed
    if case == "folder removed":
        assert not folder.exists()
    elif case == "temporary file stuck":
        assert out.read_bytes() == previous
    else:
        assert [p.name for p in folder.iterdir()] == ["fleet.jsonl"]  # no temporary file left
        if case == "now a directory":
            assert list(out.iterdir()) == []
        else:
            assert out.read_bytes() == previous
    if case == "summary too":
        assert summary.read_bytes() == previous_summary
    else:
        document = orjson.loads(summary.read_bytes())
        # The scan itself went through, but the run did not deliver its inventory.
        assert document["exit_code"] == cli.EXIT_FATAL
        assert document["error"] == message
        assert document["complete"] is False
        assert document["records"] == 0
        assert document["regions"][region]["complete"] is True
        assert document["regions"][region]["instances"] == sum(
            1 for key in shared_sim.expected() if key[0] == region
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["run.json"]


class _CtrlCOnTheSecondPage:
    """A records file on which Ctrl-C comes while the second page is written: the first page
    waits in its buffer."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._pages = 0

    def write(self, data: bytes) -> int:
        self._pages += 1
        if self._pages == 2:
            raise KeyboardInterrupt
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, close: the file's own
        return getattr(self._file, name)


@pytest.mark.usefixtures("creds")
def test_an_interrupted_run_whose_records_cannot_be_saved_keeps_130(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out, summary = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    out.write_bytes(b"an earlier inventory\n")

    class Faulty(FaultyFileSystem):
        def fdopen(self, fd: int, buffering: int) -> IO[bytes]:
            file = super().fdopen(fd, buffering)
            return _CtrlCOnTheSecondPage(file) if self.calls["fdopen"] == 1 else file  # type: ignore[return-value]

    fs = Faulty()
    fs.full_disk = {1}  # the records' file; the summary's, after, finds room

    result = run_cli(
        "scan", *shared_sim.endpoint_args(), "-o", str(out), "--summary", str(summary), "--quiet", fs=fs
    )

    assert result.code == cli.EXIT_INTERRUPTED
    message = (
        f"interrupted; cannot write to {out} (No space left on device): the records were not saved; "
        "free some space or choose another -o path"
    )
    assert result.stderr == f"eas-scan: error: {message}\n"
    assert out.read_bytes() == b"an earlier inventory\n"
    document = orjson.loads(summary.read_bytes())
    assert (document["exit_code"], document["error"]) == (cli.EXIT_INTERRUPTED, message)
    assert (document["complete"], document["records"]) == (False, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]


@pytest.mark.usefixtures("creds")
def test_a_full_disk_during_the_scan_names_the_fix_and_keeps_the_previous_file(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "fleet.jsonl"
    out.write_bytes(b"an earlier inventory\n")
    fs = FaultyFileSystem()
    fs.full_disk = {1}
    # Every region: more than the file's buffer, so the disk is met while the scan runs.
    result = run_cli("scan", *shared_sim.endpoint_args(), "-o", str(out), "--quiet", fs=fs)
    assert result.code == cli.EXIT_FATAL
    assert result.stderr == (
        f"eas-scan: error: cannot write to {out} (No space left on device): the scan was stopped; "
        "free some space or choose another -o path\n"
    )
    assert out.read_bytes() == b"an earlier inventory\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.jsonl"]


class _Unwritable(io.RawIOBase):
    """A stdout whose every write to the device fails (behind a buffer: only once it flushes)."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        raise self.error


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
            "cannot write to stdout (No space left on device): the last records were not written",
        ),
        (
            BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)),
            "stdout was closed by its reader (broken pipe): the last records were not written",
        ),
    ],
)
def test_stdout_failing_at_the_last_flush_ends_in_one_line(
    shared_sim: ThreadedSimulator, tmp_path: Path, error: OSError, message: str
) -> None:
    summary = tmp_path / "run.json"
    args = cli.build_parser().parse_args(
        ["scan", *shared_sim.endpoint_args(), "--quiet", "--summary", str(summary)]
    )
    terminal = io.StringIO()
    stdout = io.BufferedWriter(_Unwritable(error), buffer_size=1 << 24)  # all of it, until the end
    code = cli.run_scan(args, stdout=stdout, stderr=Console(file=terminal, width=200))
    assert code == cli.EXIT_FATAL
    assert terminal.getvalue() == f"eas-scan: error: {message}\n"
    document = orjson.loads(summary.read_bytes())
    assert (document["exit_code"], document["error"], document["complete"]) == (
        cli.EXIT_FATAL,
        message,
        False,
    )


@pytest.mark.usefixtures("creds")
def test_a_csv_header_that_cannot_be_written_stops_the_scan(shared_sim: ThreadedSimulator) -> None:
    args = cli.build_parser().parse_args(["scan", *shared_sim.endpoint_args(), "--format", "csv", "--quiet"])
    terminal = io.StringIO()
    stdout = _Unwritable(BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)))  # unbuffered
    code = cli.run_scan(args, stdout=stdout, stderr=Console(file=terminal, width=200))  # type: ignore[arg-type]
    assert code == cli.EXIT_FATAL
    assert terminal.getvalue() == (
        "eas-scan: error: stdout was closed by its reader (broken pipe): the scan was stopped\n"
    )


@pytest.mark.usefixtures("creds")
def test_a_closed_stdout_without_o_exits_2_before_any_request(
    run_cli: RunCli, shared_sim: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `eas-scan scan >&-`: Python starts with sys.stdout None.
    monkeypatch.setattr("sys.stdout", None)
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args())
    assert result.code == cli.EXIT_USAGE
    assert result.stderr == "eas-scan: error: stdout is closed: give -o FILE for the records\n"
    assert shared_sim.counters().total_requests == 0


@pytest.mark.usefixtures("creds")
def test_no_room_for_the_temporary_file_exits_2_before_any_request(
    run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "fleet.jsonl"
    out.write_bytes(b"an earlier inventory\n")
    fs = FaultyFileSystem()
    fs.fail("mkstemp", errno.ENOSPC)  # no inode left
    shared_sim.reset_counters()
    result = run_cli("scan", *shared_sim.endpoint_args(), "-o", str(out), fs=fs)
    assert result.code == cli.EXIT_USAGE
    assert result.stderr == (
        f"eas-scan: error: cannot write to {out} (No space left on device): "
        "free some space or choose another -o path\n"
    )
    assert shared_sim.counters().total_requests == 0
    assert out.read_bytes() == b"an earlier inventory\n"


@pytest.mark.usefixtures("creds")
def test_long_output_names(run_cli: RunCli, shared_sim: ThreadedSimulator, tmp_path: Path) -> None:
    region = shared_sim.regions[0]
    # The longest name a folder takes: its temporary file beside it must still fit.
    longest = tmp_path / ("f" * os.pathconf(tmp_path, "PC_NAME_MAX"))
    result = run_cli("scan", *shared_sim.endpoint_args([region]), "-o", str(longest), "--quiet")
    assert result.code == cli.EXIT_COMPLETE, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [longest.name]
    # One character longer cannot be a file name at all: said before any request, as for -o's folder.
    shared_sim.reset_counters()
    too_long = tmp_path / (longest.name + "f")
    result = run_cli("scan", *shared_sim.endpoint_args([region]), "-o", str(too_long), "--quiet")
    assert result.code == cli.EXIT_USAGE
    assert result.stderr == (
        f"eas-scan: error: output path {too_long} cannot be used (File name too long): "
        "choose another -o path\n"
    )
    assert shared_sim.counters().total_requests == 0


class _FullStderr(io.StringIO):
    """stderr on a full disk (`2>>log`): nothing can be reported, but the exit code still can."""

    def write(self, text: str, /) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.usefixtures("creds")
def test_an_unwritable_stderr_does_not_change_the_exit_code(
    shared_sim: ThreadedSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "fleet.jsonl"
    stderr = Console(file=_FullStderr(), width=200)
    args = cli.build_parser().parse_args(["scan", *shared_sim.endpoint_args(), "-o", str(out)])
    assert cli.run_scan(args, stderr=stderr) == cli.EXIT_COMPLETE  # the summary table is lost
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert_records_exact(records, shared_sim.expected())
    args = cli.build_parser().parse_args(["scan", *shared_sim.endpoint_args(), "-o", str(tmp_path)])
    assert cli.run_scan(args, stderr=stderr) == cli.EXIT_USAGE  # so is the error line


def test_no_command_prints_help(run_cli: RunCli) -> None:
    result = run_cli()
    assert result.code == cli.EXIT_USAGE
    assert "scan" in result.stderr
    assert "simulate" in result.stderr


def test_scan_help_lists_examples_and_exit_codes(run_cli: RunCli) -> None:
    result = run_cli("scan", "--help")
    assert result.code == 0
    help_text = result.stdout.decode()
    assert "examples:" in help_text
    assert "eas-scan scan --simulate" in help_text
    assert "exit codes:" in help_text


# --- --simulate, progress ---------------------------------------------------------------------------


def test_simulate_scans_the_embedded_fleet(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "fleet.jsonl"
    result = run_cli("scan", "--simulate", "-o", str(out), "--no-progress")
    assert result.code == 0, result.stderr
    keys = [key_of(orjson.loads(line)) for line in out.read_bytes().splitlines()]
    fleet = Fleet(preset_spec("small"), 0)
    assert len(keys) == len(set(keys))
    assert set(keys) == set(fleet.current_keys())


def test_simulate_without_loopback_is_one_error_line(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scanner.simulator import Simulator

    async def no_loopback(self: Simulator) -> Simulator:
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))

    monkeypatch.setattr(Simulator, "__aenter__", no_loopback)
    out = tmp_path / "fleet.jsonl"
    result = run_cli("scan", "--simulate", "-o", str(out), "--quiet")
    assert result.code == cli.EXIT_FATAL
    assert result.stderr == (
        "eas-scan: error: cannot start the embedded simulator on 127.0.0.1 "
        f"({os.strerror(errno.EADDRNOTAVAIL)}): check that the loopback interface is up, "
        "or scan a real account without --simulate\n"
    )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _scan_on_terminal(argv: list[str], width: int = 120) -> tuple[int, str, bytes]:
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=width, color_system=None)
    stdout = io.BytesIO()
    code = cli.run_scan(args, stdout=stdout, stderr=console)
    return code, terminal.getvalue(), stdout.getvalue()


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize("width", [80, 120])
def test_progress_on_a_terminal(shared_sim: ThreadedSimulator, width: int) -> None:
    total = len(shared_sim.expected())
    code, terminal, stdout = _scan_on_terminal(["scan", *shared_sim.endpoint_args()], width)
    assert code == 0
    assert len(stdout.splitlines()) == total
    last = terminal.split("\r")[-8:]
    shown = "\n".join(last)
    assert "regions" in shown
    assert "2/2" in shown
    assert "services" in shown
    assert "instances" in shown
    assert f"{total}/{total}" in shown
    for word in ("req/s", "retries", "throttled", "0:00:0"):
        assert word in shown
    assert "…" not in shown, "a column was cut short"


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize("flag", ["--no-progress", "--quiet"])
def test_no_progress_flags_turn_it_off(shared_sim: ThreadedSimulator, flag: str) -> None:
    code, terminal, _ = _scan_on_terminal(["scan", *shared_sim.endpoint_args(), flag])
    assert code == 0
    assert "req/s" not in terminal
    if flag == "--quiet":
        assert terminal == ""
    else:
        assert "complete: 1,000 instances" in terminal


def test_simulate_subcommand_help_and_bad_flag(run_cli: RunCli) -> None:
    result = run_cli("simulate", "--help")
    assert result.code == 0
    assert result.stdout.decode().startswith("usage: eas-scan simulate")
    result = run_cli("simulate", "--preset", "huge")
    assert result.code == cli.EXIT_USAGE
    assert "eas-scan simulate: error: argument --preset" in result.stderr


@pytest.mark.parametrize(
    ("endpoint_type", "host"),
    [("public", "pai-eas.cn-beijing.aliyuncs.com"), ("vpc", "pai-eas-manage-vpc.cn-beijing.aliyuncs.com")],
)
def test_endpoint_type_picks_the_host(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, endpoint_type: str, host: str
) -> None:
    # No override for the region: the real endpoint is tried, and the test's network guard
    # refuses it (before any DNS lookup) and records the name.
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tNotARealKey000000")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-a-real-secret-000000000000")
    monkeypatch.setattr(netguard, "ATTEMPTS", [])
    args = ["--regions", "cn-beijing", "--endpoint-type", endpoint_type, "--max-attempts", "1"]
    result = run_cli("scan", *args)
    assert result.code == cli.EXIT_FATAL  # the only region failed
    attempts = netguard.ATTEMPTS
    assert attempts == [host]
    assert f"cannot connect to {host}:443" in result.stderr


def test_log_progress_reports_at_its_interval(caplog: pytest.LogCaptureFixture) -> None:
    stats = ScanStatistics(
        elapsed_s=12.0,
        requests=240,
        retries=3,
        throttled=2,
        bytes_received=0,
        records=500,
        failures=1,
        regions={
            "cn-hangzhou": RegionStatistics(10, 10, 400, 400, 120, None),
            "cn-shanghai": RegionStatistics(20, 5, 900, 100, 120, None),
        },
    )

    sleeps: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        if len(sleeps) == 3:
            raise Stop
        sleeps.append(seconds)

    with caplog.at_level(logging.INFO, logger="scanner.progress"), pytest.raises(Stop):
        anyio.run(LogProgress(lambda: stats, sleep=sleep).run)
    assert sleeps == [10.0, 10.0, 10.0]  # a modest interval: a line every 10 s
    lines = [record.getMessage() for record in caplog.records if record.name == "scanner.progress"]
    assert len(lines) == 3
    assert lines[0] == (
        "progress: regions 1/2, services 15/30, instances 500/1,300, 20 req/s, 3 retries, "
        "2 throttled, 1 failures, 12.0s elapsed"
    )


@pytest.mark.usefixtures("own_creds")
def test_quiet_still_says_why_a_scan_is_incomplete(run_cli: RunCli, sim: ThreadedSimulator) -> None:
    forbidden = sim.regions[0]
    sim.forbid_region(forbidden)
    result = run_cli("scan", *sim.endpoint_args(), "--quiet")
    assert result.code == cli.EXIT_INCOMPLETE
    assert result.stderr == f"eas-scan: incomplete: 1 failure(s), first {forbidden}/-: Forbidden.RAM\n"


def test_simulate_never_sends_a_region_to_the_real_endpoint(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netguard, "ATTEMPTS", [])
    result = run_cli("scan", "--simulate", "--regions", "cn-shanghai,cn-beijing")
    assert result.code == cli.EXIT_USAGE
    assert result.stdout == b""
    assert (
        "--regions: the simulated fleet (small) has no cn-beijing; it has cn-hangzhou, cn-shanghai"
        in result.stderr
    )
    attempts = netguard.ATTEMPTS
    assert attempts == []
    result = run_cli("scan", "--simulate", "--regions", "cn-shanghai", "--quiet")
    assert result.code == 0
    assert {record["ClusterId"] for record in result.records()} == {"cn-shanghai"}


@pytest.mark.usefixtures("creds")
def test_a_full_disk_stops_the_scan_with_one_line(shared_sim: ThreadedSimulator) -> None:
    class FullDisk(io.BytesIO):
        def write(self, data: Any, /) -> int:
            if len(self.getvalue()) > 10_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    args = cli.build_parser().parse_args(["scan", *shared_sim.endpoint_args()])
    terminal = io.StringIO()
    stdout = FullDisk()
    code = cli.run_scan(args, stdout=stdout, stderr=Console(file=terminal, width=200))
    assert code == cli.EXIT_FATAL
    assert terminal.getvalue().endswith(
        "eas-scan: error: cannot write to stdout (No space left on device): the scan was stopped\n"
    )
    assert stdout.getvalue().endswith(b"\n")


@pytest.mark.usefixtures("creds")
@pytest.mark.parametrize(("flags", "logged"), [([], True), (["--no-progress"], False), (["--quiet"], False)])
def test_progress_log_lines_off_a_terminal(
    run_cli: RunCli,
    shared_sim: ThreadedSimulator,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    logged: bool,
) -> None:
    started: list[float] = []

    class Recorded(LogProgress):
        async def run(self) -> None:
            started.append(self._interval)
            await super().run()

    monkeypatch.setattr("scanner.cli.scan.LogProgress", Recorded)
    result = run_cli("scan", *shared_sim.endpoint_args(), *flags)
    assert result.code == 0
    assert started == ([10.0] if logged else [])
