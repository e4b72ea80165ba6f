"""scaleout: one organisation scanned into a scan directory by the local engine, then by Ray with 1
and with 2 workers, in the same run, against the same simulator (issue 15).

The organisation simulator runs in its own process: 16 member accounts x 2 regions (32 units of
(account, region), 720,000 instances, 10 services per region and account: about 22,500 records a
unit), with a quota of ``LIMIT_QPS`` requests/s per (account, region, action), the dimension of
EAS's quotas, that the scanner is not told. Summed over the 32 scopes that is 16,000 requests/s,
some forty times what one process can use (``summed_limit_qps`` against the local run's
``achieved_qps``); and one scope's quota is more than one core can use in one scope, so a Ray
worker, even one unit at a time, is held by its CPU and not by a quota (``throttled`` 0; its
``units_per_worker`` slots buy nothing here, see the README's model).
The scan is this big (about 10 s for the local engine) because a Ray scan pays about a second
once, whatever its size (its workers' processes, Ray's and the scanner's imports, the first round
trips; a unit's own share is ``unit_costs.fixed_ms``), and an organisation scan lasts minutes: at
240,000 records that second was a quarter of the run (quiet machine, same code: ``ray_2_vs_local``
1.18 at 240,000 records, 1.34 at 480,000). See the README's "Scaling out: a model".

- ``local``: ``eas-scan scan --org --output-dir DIR`` (the local engine as users run it: 32
  accounts in flight), in a client process (``benchmarks.clients.cli_client``).
- ``ray_1``, ``ray_2``: ``scanner.distributed.scan_with_ray`` with units (account, region), 1 or 2
  workers, each assuming its accounts' roles (``benchmarks.clients.ray_org``), both in one client
  process (``harness.run_phased_client``). Ray starts there once, before either clock starts
  (``ray_init_s``: on a cluster it is running already); each run's actors' start and stop are
  measured. ``cpu_s`` there is the driver's CPU plus each worker's own
  (``workers_cpu_s``), ``peak_rss_mb`` the largest worker's (``workers_peak_rss_mb``,
  ``driver_peak_rss_mb``); ``unit_costs``: a unit's wall time on a worker, fixed part and per record.

Every run's ``sim_cpu_us_per_record`` is the simulator's CPU per record (``/proc``): it shares the
2 cores. Its pages are rendered once and then served from its cache (``--page-cache-mb``; a cold
page costs it about three times a cached one): the full run first scans once, unmeasured, so that
no measured run pays the rendering, then measures each client ``ROUNDS`` times, interleaved, and
keeps each client's fastest round (``wall_s_rounds``; ``load_avg_1m_rounds``: the machine's load
as each round started, for it is shared; ``assume_role_calls``: the run's, from the simulator).
The Ray runs' units carry their sizes, the records of that first scan (``ray_units_sized``; the
client calls ``sizes_from`` on its directory inside the measure), so the driver hands them out
biggest first: an organisation is scanned again and again, and ``eas-scan scan --engine ray`` sizes
its units from the earlier scan in its directory the same way. The accounts' sizes are long-tailed
(the biggest unit 27,800 records, the smallest 1,200): unsized, in the order listed, a big unit
handed out late leaves one worker finishing alone (0.4-0.6 s of a ~4 s run). The local engine has
all 32 accounts in flight at once and no order to gain. ``--quick`` has no first scan: unsized.
``exact``: every account's content digest (every field of every record) equals the simulator's
(``/_simulator/org/digests?content=1``), and the scan directory's manifest says complete and
verifies, in every round.

The package's bytecode is compiled first (``compile_bytecode``), as ``pip install`` does: under an
editable install with ``PYTHONDONTWRITEBYTECODE`` set (this machine's), every Ray worker would
otherwise compile the scanner's modules from source inside the Ray runs' measure (0.53 G
instructions a worker, a quarter of its imports), which no installed worker does, while the local
run imports nothing inside its measure (its client imports the scanner before its clock starts).

``--quick`` (CI): 8 accounts x 2 regions, 8,000 instances, one round, no warm-up; the three runs
still run, Ray starting once (30 s in all on this machine under a load average of 7, Ray's start
9 s of it). It checks exactness only, never a speed.
"""

from __future__ import annotations

import compileall
import os
import shutil
from pathlib import Path
from typing import Any

from benchmarks.formats import endpoint_args
from benchmarks.harness import ROOT, SimulatorProcess, run_client, run_phased_client
from scanner.scandir import ScanDirectory
from scanner.scandir.formats import iter_records
from scanner.simulator.digest import DigestBuilder, content_hash

__all__ = ["LIMIT_QPS", "ROUNDS", "compile_bytecode", "directory_digests", "run"]

#: Requests per second per (account, region, action): above what one core uses in one scope.
LIMIT_QPS = 500.0
#: Its burst: the scanner sends a listing's pages 8 at a time, and one worker's pages bunch up.
BURST = 100
ROUNDS = 3
#: The Ray runs: ``ray_N`` for N workers.
WORKERS = (1, 2)
REGIONS = 2
#: The keys of the Ray client's answer that go into its RUN dict.
RAY_KEYS = (
    "driver_cpu_s",
    "workers_cpu_s",
    "workers_peak_rss_mb",
    "driver_peak_rss_mb",
    "ray_init_s",
    "unit_costs",
)
_TAGS = ("AccountId", "ClusterId", "ServiceName", "Service")


def compile_bytecode() -> bool:
    """Write the ``__pycache__`` of the packages the Ray workers import (``scanner``, ``benchmarks``),
    as installing them would; up to date ones are kept. True when every module compiled."""
    return all(compileall.compile_dir(ROOT / package, quiet=1) for package in ("scanner", "benchmarks"))


def _shape(quick: bool) -> dict[str, int]:
    if quick:
        return {"accounts": 8, "services": 6, "instances": 8_000}
    return {"accounts": 16, "services": 10, "instances": 720_000}


def directory_digests(root: Path) -> tuple[bool, dict[str, dict[str, Any]]]:
    """(the manifest says complete, each account's content digest) of a multi-account scan directory."""
    directory = ScanDirectory.open(root)
    builders: dict[str, DigestBuilder] = {}
    for unit, entry in directory.entries().items():
        if entry.file is None or unit.account is None:
            continue
        builder = builders.setdefault(unit.account, DigestBuilder())
        for record in iter_records(root / entry.file, entry.format):
            cluster_id, service_name = record["ClusterId"], record["ServiceName"]
            for tag in _TAGS:
                record.pop(tag, None)
            builder.add_hash(content_hash(cluster_id, service_name, record))
    complete = bool(directory.status()["complete"]) and directory.verify() == []
    return complete, {account: b.result().to_dict() for account, b in builders.items()}


def _assume_role_calls(sim: SimulatorProcess) -> int:
    """AssumeRole calls the simulator's STS has answered so far (any outcome)."""
    return int(sim._admin("org")["rpc_requests"].get("Sts", {}).get("AssumeRole", 0))


class _Checker:
    """Checks each run as it ends: ``exact``, the load as it began, its AssumeRole calls; then
    removes its scan directory."""

    def __init__(self, sim: SimulatorProcess, truth: dict[str, dict[str, Any]]) -> None:
        self._sim = sim
        self._truth = truth
        self.mark()

    def mark(self) -> None:
        """A run begins."""
        self._load = os.getloadavg()[0]
        self._assumed = _assume_role_calls(self._sim)

    def __call__(self, one: dict[str, Any], out: Path) -> int:
        """Check the run ``one`` that wrote ``out``; the records there. The next run begins."""
        complete, digests = directory_digests(out)
        one["exact"] = complete and digests == self._truth
        one["load_avg_1m"] = round(self._load, 2)
        one["assume_role_calls"] = _assume_role_calls(self._sim) - self._assumed
        shutil.rmtree(out)
        self.mark()
        return sum(d["count"] for d in digests.values())


def _set_records(one: dict[str, Any], records: int) -> None:
    """Fill in a RUN dict's per-record figures from ``records``."""
    wall, cpu, sim_cpu = one["wall_s"], one["cpu_s"], one["sim_cpu_s"]
    one["records"] = records
    one["records_per_s"] = round(records / wall, 1) if wall else None
    one["cpu_us_per_record"] = round(cpu / records * 1e6, 2) if records else None
    one["sim_cpu_us_per_record"] = round(sim_cpu / records * 1e6, 2) if records and sim_cpu else None


def _local(sim: SimulatorProcess, out: Path) -> dict[str, Any]:
    argv = [
        "scan", "--org", *endpoint_args(sim), "--sts-endpoint", sim.info["sts_endpoint"],
        "--resourcemanager-endpoint", sim.info["resourcemanager_endpoint"],
        "--output-dir", str(out), "--quiet",
    ]  # fmt: skip
    # No "output" in the job: the client reads nothing back; the digests are taken here, per account.
    return run_client("cli", sim, sim.client_job(argv=argv), truth=None)


def _ray(
    sim: SimulatorProcess, workdir: Path, accounts: list[str], check: _Checker, sizes: Path | None
) -> list[dict[str, Any]]:
    """``ray_1`` then ``ray_2``: one client process, one Ray start, a scan directory each; the
    units sized from the scan directory ``sizes`` when given."""
    outs = [workdir / f"scaleout-ray_{workers}" for workers in WORKERS]
    job = sim.client_job(
        sts_endpoint=sim.info["sts_endpoint"],
        accounts=accounts,
        regions=sorted(sim.endpoints),
        output_dirs=[str(out) for out in outs],
        workers=list(WORKERS),
    )
    if sizes is not None:
        job["sizes_from"] = str(sizes)
    done = iter(outs)

    def after(one: dict[str, Any]) -> None:
        check(one, next(done))

    return run_phased_client("benchmarks.clients.ray_org", sim, job, len(WORKERS), keep=RAY_KEYS, after=after)


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    shape = _shape(quick)
    compile_bytecode()
    args = [
        "--preset", "org-small", "--seed", "6", "--accounts", str(shape["accounts"]),
        "--non-success", "0", "--regions", str(REGIONS),
        "--services-per-region", str(shape["services"]), "--org-instances", str(shape["instances"]),
        "--distribution", "even", "--rate-limit", str(LIMIT_QPS), "--burst", str(BURST),
        "--page-cache-mb", "1024",
    ]  # fmt: skip
    result: dict[str, Any] = {
        "accounts": shape["accounts"],
        "instances": shape["instances"],
        "regions": REGIONS,
        "units": shape["accounts"] * REGIONS,
        "limit_qps_per_scope": LIMIT_QPS,
        "summed_limit_qps": LIMIT_QPS * shape["accounts"] * REGIONS,
    }
    with SimulatorProcess(args) as sim:
        truth = {
            account: {"count": d["count"], "digest": d["digest"]}
            for account, d in sim._admin("org/digests?content=1")["accounts"].items()
            if d["count"]
        }
        accounts = sorted(truth)
        warm: Path | None = None
        if not quick:  # render every page once, unmeasured: no measured run pays for it
            warm = workdir / "scaleout-warm"
            _local(sim, warm)
        result["ray_units_sized"] = warm is not None
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(1 if quick else ROUNDS):
            check = _Checker(sim, truth)
            out = workdir / "scaleout-local"
            one = _local(sim, out)
            # The CLI client reads nothing back: the records are those in the directory.
            _set_records(one, check(one, out))
            runs.setdefault("local", []).append(one)
            for workers, one in zip(WORKERS, _ray(sim, workdir, accounts, check, warm), strict=True):
                runs.setdefault(f"ray_{workers}", []).append(one)
        if warm is not None:
            shutil.rmtree(warm)
    for name, attempts in runs.items():
        best = min(attempts, key=lambda one: one["wall_s"])
        best["wall_s_rounds"] = [one["wall_s"] for one in attempts]
        best["load_avg_1m_rounds"] = [one["load_avg_1m"] for one in attempts]
        best["exact"] = all(one["exact"] for one in attempts)
        result[name] = best
    local, ray_2 = result["local"]["records_per_s"], result["ray_2"]["records_per_s"]
    result["ray_2_vs_local"] = round(ray_2 / local, 3) if local and ray_2 else None
    return result
