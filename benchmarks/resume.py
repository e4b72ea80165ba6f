"""resume: a scan into a directory killed (SIGKILL) at about half its regions, then ``--resume``.

Three ``eas-scan scan --output-dir`` processes against one simulator (with latency, so a scan lasts
long enough to be cut): an uninterrupted scan (``requests_uninterrupted``); a scan killed once half
of the regions have their part committed; its ``--resume``. ``requests_total`` is the killed run's
requests plus the resume's; ``ratio`` = total / uninterrupted. The goal is ratio <= 1.1 plus the
requests the killed run spent on the regions it did not commit (``cut_fraction``: those requests
over the uninterrupted total), which a resume lists again by design. ``exact``: the resumed
directory holds exactly the simulator's fleet (content digest), and so does the uninterrupted one.
In ``--quick``: 10 regions, 20,000 instances; else 10 regions, 200,000 instances.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.clients.cli_client import digest_of
from benchmarks.formats import endpoint_args
from benchmarks.harness import ROOT, SimulatorProcess, fleet_args

__all__ = ["run"]

REGIONS = 10


def _requests(counters: dict[str, Any]) -> dict[str, int]:
    return {region: sum(actions.values()) for region, actions in counters["requests"].items()}


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    instances = 20_000 if quick else 200_000
    fleet = fleet_args(regions=REGIONS, services=40, instances=instances, max_per_service=instances // 40)
    with SimulatorProcess([*fleet, "--latency-ms", "10"]) as sim:
        truth = sim.truth()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": sim.info["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sim.info["access_key_secret"],
        }

        def command(folder: Path, *extra: str) -> list[str]:
            return [
                sys.executable, "-m", "scanner", "scan", *endpoint_args(sim), "--quiet",
                "--output-dir", str(folder), *extra,
            ]  # fmt: skip

        whole, cut = workdir / "resume-whole", workdir / "resume-cut"
        sim.reset_counters()
        started = time.perf_counter()
        subprocess.run(command(whole), env=env, check=True)
        uninterrupted_s = time.perf_counter() - started
        uninterrupted = sum(_requests(sim.counters()).values())

        sim.reset_counters()
        process = subprocess.Popen(command(cut), env=env)
        parts = cut / "_manifest" / "parts"
        while process.poll() is None:
            if parts.is_dir() and sum(1 for p in parts.glob("*.json")) >= REGIONS // 2:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        process.wait()
        killed_by_region = _requests(sim.counters())
        committed = {p.name.removesuffix(".json").removeprefix("region=") for p in parts.glob("*.json")}
        cut_requests = sum(n for region, n in killed_by_region.items() if region not in committed)

        sim.reset_counters()
        subprocess.run(command(cut, "--resume"), env=env, check=True)
        resumed = sum(_requests(sim.counters()).values())

        expected = {"count": truth["count"], "digest": truth["digest"]}
        exact = (
            digest_of({"output_dir": str(cut)})[1] == expected
            and digest_of({"output_dir": str(whole)})[1] == expected
        )
    total = sum(killed_by_region.values()) + resumed
    cut_fraction = round(cut_requests / uninterrupted, 4) if uninterrupted else 0.0
    return {
        "instances": truth["count"],
        "regions": REGIONS,
        "regions_committed_before_kill": len(committed),
        "requests_uninterrupted": uninterrupted,
        "requests_killed_run": sum(killed_by_region.values()),
        "requests_resume": resumed,
        "requests_total": total,
        "ratio": round(total / uninterrupted, 4) if uninterrupted else None,
        "cut_fraction": cut_fraction,
        "goal_ratio": round(1.1 + cut_fraction, 4),
        "uninterrupted_s": round(uninterrupted_s, 2),
        "exact": exact,
    }
