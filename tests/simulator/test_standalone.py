"""``python -m scanner.simulator`` as a subprocess: one JSON line, signed requests, clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_eas20210701 import models as eas_models
from alibabacloud_eas20210701.client import Client
from alibabacloud_tea_openapi.models import Config

from scanner.simulator.digest import record_key_digest
from scanner.simulator.standalone import build_parser, main, simulator_from_args

ROOT = Path(__file__).resolve().parents[2]


MODULE = (sys.executable, "-m", "scanner.simulator")
# The console script of this environment (pip install -e . puts it next to the interpreter).
EAS_SCAN_SIMULATE = (str(Path(sys.executable).parent / "eas-scan"), "simulate")


def start(*args: str, command: tuple[str, ...] = MODULE) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        code = process.wait(timeout=10)
        assert process.stderr is not None
        stderr = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
        raise AssertionError(f"no JSON line (exit {code}); stderr: {stderr}")
    return process, json.loads(line)


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process, info = start("--preset", "small", "--port", "0", "--seed", "3")
    try:
        yield process, info
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def client(info: dict[str, Any], region: str) -> Client:
    return Client(
        Config(
            access_key_id=info["access_key_id"],
            access_key_secret=info["access_key_secret"],
            endpoint=info["endpoints"][region].removeprefix("http://"),
            protocol="HTTP",
            region_id=region,
        )
    )


def admin(info: dict[str, Any], route: str) -> Any:
    url = next(iter(info["endpoints"].values())) + "/_simulator/" + route
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("command", [MODULE, EAS_SCAN_SIMULATE], ids=["python-m", "eas-scan-simulate"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_signed_requests_and_exits_cleanly_on_a_signal(signum: int, command: tuple[str, ...]) -> None:
    process, info = start("--preset", "small", "--port", "0", command=command)
    try:
        assert set(info) == {"endpoints", "access_key_id", "access_key_secret", "instances"}
        assert info["instances"] == 1_000
        assert all(url.startswith("http://127.0.0.1:") for url in info["endpoints"].values())
        region = sorted(info["endpoints"])[0]
        response = client(info, region).list_services(eas_models.ListServicesRequest(page_size=3))
        assert len(response.body.services) == 3
        assert process.stdout is not None
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
        assert process.stdout.read() == ""  # exactly one line
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_client_can_prove_its_listing_exact(server: tuple[subprocess.Popen[str], dict[str, Any]]) -> None:
    _, info = server
    keys = []
    for region in info["endpoints"]:
        sdk = client(info, region)
        services = sdk.list_services(eas_models.ListServicesRequest(page_size=100)).body.services
        for service in services:
            page = 1
            while True:
                request = eas_models.ListServiceInstancesRequest(page_number=page, page_size=100)
                body = sdk.list_service_instances(region, service.service_name, request).body
                keys += [(region, service.service_name, i.instance_name) for i in body.instances]
                if page * 100 >= body.total_count:
                    break
                page += 1
    digest = admin(info, "fleet-digest")
    assert digest == {"mode": "current", **record_key_digest(keys).to_dict()}
    assert digest["count"] == info["instances"]
    counters = admin(info, "counters")
    assert counters["total_requests"] == sum(sum(v.values()) for v in counters["requests"].values())
    assert counters["requests"][sorted(info["endpoints"])[0]]["ListServices"] == 1


def free_port_pair() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` were both free a moment ago (the OS picks ``p``)."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            base: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", base + 1))
            except OSError:
                continue  # base + 1 is taken (or past 65535): let the OS pick again
            return base


def start_on_fixed_ports(*args: str, attempts: int = 5) -> tuple[subprocess.Popen[str], dict[str, Any], int]:
    """Start on two consecutive free ports; another process may take one between our probe and
    the simulator's bind, so a failed bind is retried on a fresh pair (never silently passed)."""
    errors = []
    for _ in range(attempts):
        base = free_port_pair()
        try:
            process, info = start("--port", str(base), *args)
        except AssertionError as exc:
            if "address already in use" not in str(exc).lower():
                raise
            errors.append(str(exc))
            continue
        return process, info, base
    raise AssertionError(f"no free pair of ports in {attempts} attempts: {errors}")


def test_fixed_ports_and_keys() -> None:
    assert build_parser().parse_args(["--port", "0"]).port == 0
    process, info, base = start_on_fixed_ports("--access-key-id", "AKID", "--access-key-secret", "SECRET")
    try:
        assert info["endpoints"] == {
            "cn-hangzhou": f"http://127.0.0.1:{base}",
            "cn-shanghai": f"http://127.0.0.1:{base + 1}",
        }
        assert (info["access_key_id"], info["access_key_secret"]) == ("AKID", "SECRET")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_port_already_in_use_is_an_error_not_a_hang() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match=r"(?i)exit 1\).*address already in use"):
            start("--port", str(port))


def test_help_lists_the_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"], prog="eas-scan simulate")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: eas-scan simulate")
    for flag in (
        "--preset", "--seed", "--host", "--port", "--latency-ms", "--rate-limit", "--fault-rate",
        "--access-key-id", "--access-key-secret", "--throttle-status", "--retry-after-ms", "/_simulator/",
    ):  # fmt: skip
        assert flag in text


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--fault-rate", "1.5"])
    assert exit_info.value.code == 2
    assert main(["--access-key-id", "only-the-id"]) == 2
    assert "access_key_secret" in capsys.readouterr().err


def test_custom_fleet_and_faults_from_flags() -> None:
    args = build_parser().parse_args(
        ["--regions", "3", "--services-per-region", "4", "--instances", "120", "--distribution", "even",
         "--fault-rate", "0.2", "--rate-limit", "50", "--throttle-status", "400", "--retry-after-ms", "auto",
         "--instance-start-rate", "2"]
    )  # fmt: skip
    sim = simulator_from_args(args)
    assert len(sim.fleet.regions) == 3
    assert sim.fleet.service_count == 12
    assert sim.fleet.instance_count == 120
    assert (sim.faults.internal_error_rate, sim.faults.unavailable_rate) == (0.1, 0.1)
    assert (sim.faults.rate_limit, sim.faults.throttle_status, sim.faults.retry_after_ms) == (50, 400, "auto")
    assert sim.churn.instance_starts == 2


def test_binds_loopback_unless_told_otherwise() -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"
    sim = simulator_from_args(build_parser().parse_args([]))
    assert sim.host == "127.0.0.1"

    async def bound_addresses() -> set[str]:
        async with sim:
            return {sock.getsockname()[0] for sock in sim._sockets}

    assert asyncio.run(bound_addresses()) == {"127.0.0.1"}
