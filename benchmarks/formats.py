"""formats: ``eas-scan scan -o FILE`` as JSON Lines and as Parquet, on the same fleet: CPU per record,
peak RSS, bytes written, and whether each file holds exactly the simulator's fleet.

Each run is ``eas-scan`` in a client process of its own (``benchmarks.clients.cli_client``); the
file is read back (after the measure stops) and its content digest compared with the simulator's.
The fleet is the ``large`` preset (1,000,000 instances); in ``--quick``, 50,000 instances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, run_client

__all__ = ["endpoint_args", "run"]


def endpoint_args(sim: SimulatorProcess) -> list[str]:
    args: list[str] = []
    for region, url in sim.endpoints.items():
        args += ["--endpoint", f"{region}={url}"]
    return args


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    if quick:
        fleet = fleet_args(regions=10, services=200, instances=50_000, max_per_service=5_000)
    else:
        fleet = ["--preset", "large", "--seed", "6"]
    with SimulatorProcess(fleet) as sim:
        truth = sim.truth()
        result: dict[str, Any] = {"instances": sim.instances}
        for fmt in ("jsonl", "parquet"):
            out = workdir / f"formats.{fmt}"
            argv = ["scan", *endpoint_args(sim), "-o", str(out), "--format", fmt, "--quiet"]
            run = run_client("cli", sim, sim.client_job(argv=argv, output=str(out)), truth=truth)
            run["bytes"] = out.stat().st_size
            out.unlink()
            result[fmt] = run
    return result
