"""README.md tells the truth: its commands, flags, exit codes, summary and examples are the real ones."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import start_blocking_portal

from scanner import Concurrency, RateLimit, RetryPolicy, ServiceQuery, Timeouts, cli
from scanner.eas.params import INSTANCE_FIELDS
from scanner.records import SERVICE_SUMMARY_FIELDS
from scanner.simulator import PRESETS, Simulator

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def between(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```\n<!-- /{marker} -->", README, re.S)
    assert match, f"README.md has no command between <!-- {marker} --> markers"
    return match.group(1)


def code_block(after_heading: str, lang: str) -> str:
    section = README.split(after_heading, 1)[1]
    match = re.search(rf"```{lang}\n(.*?)\n```", section, re.S)
    assert match, f"no {lang} block after {after_heading!r}"
    return match.group(1)


def test_main_and_test_commands_are_at_the_top() -> None:
    main = between("main-command")
    tests = between("test-command")
    assert (
        README.index("<!-- main-command -->") < README.index("<!-- test-command -->") < README.index("\n## ")
    )
    assert main.endswith("eas-scan scan --simulate")
    assert "pip install" in main
    assert main.startswith("python3 -m venv .venv")
    assert "-m pytest" in tests
    assert "'.[test]'" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci
    assert "<!-- \\/test-command -->" in ci
    assert '-c "$test_command"' in ci


def scan_flags() -> set[str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        cli.build_parser().parse_args(["scan", "--help"])
    help_text = buffer.getvalue()
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", help_text)) - {"--help"}


def test_every_scan_flag_is_documented() -> None:
    flags = scan_flags()
    assert {"--regions", "--endpoint", "--is-spot", "--summary", "--quiet", "--timeout"} <= flags
    undocumented = sorted(flag for flag in flags if f"`{flag}" not in README)
    assert not undocumented, f"flags missing from README.md: {undocumented}"


def test_every_documented_flag_exists() -> None:
    section = README.split("## Scanning a real account", 1)[1].split("## Records", 1)[0]
    documented = set(re.findall(r"`(--[a-z][a-z-]+)", section))
    assert documented
    assert documented <= scan_flags()


def test_exit_codes_table_matches_the_cli() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README, re.M))
    assert {int(code) for code in table} == {
        cli.EXIT_COMPLETE,
        cli.EXIT_FATAL,
        cli.EXIT_USAGE,
        cli.EXIT_INCOMPLETE,
        cli.EXIT_INTERRUPTED,
    }
    assert "complete" in table[str(cli.EXIT_COMPLETE)]
    assert "incomplete" in table[str(cli.EXIT_INCOMPLETE)]
    assert "interrupted" in table[str(cli.EXIT_INTERRUPTED)]


def test_summary_example_has_the_real_keys() -> None:
    example = orjson.loads(code_block("## The summary", "json"))
    written = {
        "complete",
        "records",
        "duration_s",
        "requests",
        "retries",
        "throttled",
        "regions",
        "failures",
        "services",
        "exit_code",
    }
    assert set(example) <= written | {"notable_services", "missing_services", "cancelled", "bytes_received"}
    assert written <= set(example)
    for region in example["regions"].values():
        assert set(region) == {"services", "instances", "complete", "error"}
    for failure in example["failures"]:
        assert set(failure) == {"region", "service", "code", "message"}


@pytest.fixture
def simulator_at_8001(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Simulator, str]]:
    """A small simulator; its first region stands in for the README's 127.0.0.1:8001."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Simulator(preset="small")) as sim,
    ):
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sim.access_key_id)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sim.access_key_secret)
        yield sim, sim.endpoints["cn-hangzhou"].removeprefix("http://")


def run_example(source: str, address: str) -> dict[str, Any]:
    assert "127.0.0.1:8001" in source
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(source.replace("127.0.0.1:8001", address), "README.md", "exec"), namespace)
    return namespace


def test_library_example_runs_against_the_simulator(
    simulator_at_8001: tuple[Simulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, address = simulator_at_8001
    run_example(code_block("## The library", "python"), address)
    lines = capsys.readouterr().out.splitlines()
    running = [
        (name, instance["InstanceName"])
        for region, name, instance, _ in sim.fleet.expected_records()
        if region == "cn-hangzhou" and instance["Status"] == "Running"
    ]
    assert sorted(lines[:-1]) == sorted(f"{name} {instance} Running" for name, instance in running)
    assert lines[-1] == "True ()"


def test_sdk_example_runs_against_the_simulator(
    simulator_at_8001: tuple[Simulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, address = simulator_at_8001
    source = code_block("## The simulator, for any EAS client", "python")
    run_example(source, address)
    count, first = capsys.readouterr().out.split()
    services = sim.fleet.list_services("cn-hangzhou", ServiceQuery())
    assert int(count) == len(services)
    assert first == services[0].name


def test_simulate_presets_are_described_with_their_sizes() -> None:
    sentence = README.split("`--simulate [small|medium|large]`", 1)[1].split("\n\n", 1)[0]
    sizes = [f"{PRESETS[name].total_instances:,}" for name in ("small", "medium", "large")]
    assert f"({sizes[0]}, {sizes[1]} or {sizes[2]} instances)" in " ".join(sentence.split())


def test_records_section_names_the_real_fields() -> None:
    section = " ".join(README.split("## Records", 1)[1].split("## The summary", 1)[0].split())
    assert f"all {len(INSTANCE_FIELDS)}" in section
    listed = re.findall(r"`(\w+)`", section.split("- `Service`:", 1)[1].split(".", 1)[0])
    assert tuple(listed) == SERVICE_SUMMARY_FIELDS


def test_library_knob_defaults_are_the_real_ones() -> None:
    text = " ".join(README.split())
    c, r, t = Concurrency(), RetryPolicy(), Timeouts()
    assert (
        f"Concurrency(total={c.total}, per_region={c.per_region}, pages_per_listing={c.pages_per_listing}, "
        f"services_per_region={c.services_per_region}, "
        f"long_listings_per_region={c.long_listings_per_region}, long_listings={c.long_listings})"
    ) in text
    assert (
        f"RetryPolicy(max_attempts={r.max_attempts}, base_delay={r.base_delay}, max_delay={r.max_delay}, "
        f"budget={r.budget})"
    ) in text
    assert f"Timeouts(connect={t.connect:g}, read={t.read:g}, total={t.total:g})" in text
    assert f"RateLimit(requests_per_second={RateLimit().requests_per_second})" in text
