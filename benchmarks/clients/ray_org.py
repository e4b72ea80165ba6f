"""The Ray engine over an organisation, through the library: ``scanner.distributed.scan_with_ray``.

The job names the member accounts and regions; the units are every (account, region), each worker
assumes its accounts' roles (``AssumedRoleSource``) and commits its units' parts into one scan
directory. Run as ``python -m benchmarks.clients.ray_org`` by ``benchmarks.harness.run_phased_client``:
one process, one Ray, one measured scan per entry of the job's ``workers`` (``[1, 2]``), each into
its own directory (``output_dirs``).

Ray starts on this machine (loopback, 2 CPUs, no dashboard) once, *before* the measures start: on
a cluster Ray is already running when a scan begins (``ray_init_s`` says what starting it took
here). Each measure covers what every scan pays: the actors' start (their processes, imports and
Scanners), the scan, the actors' stop.

CPU: ``cpu_s`` is the driver's (this process) plus every worker's, each worker measuring its own
process (``getrusage``) from the moment its runner opens to the end of its last unit
(``MeasuredRunnerFactory``: it adds ``worker_usage`` to each unit's report); ``peak_rss_mb`` is the
largest worker's peak RSS, ``driver_peak_rss_mb`` the driver's. Ray's own processes (GCS,
raylet) are not counted. ``unit_costs``: a unit's wall time on its worker, as a fixed part plus a
part per record (a least-squares line through the units).

Workers import this module (``MeasuredRunnerFactory`` reaches them pickled by reference): it imports
nothing a real worker would not (``benchmarks.clients.common`` pulls in the simulator, ``aiohttp.web``
and their 0.15-0.3 s of imports, so the driver's measure imports it only when it runs).

With ``sizes_from`` (a scan directory of the same organisation) in the job, the units carry the
records that scan counted (``scanner.distributed.sizes_from``, inside the measure), so the driver
hands them out biggest first, as ``eas-scan scan --engine ray`` does when its directory holds an
earlier scan; without it their sizes are unknown and they go in the order listed.

Each worker scans ``scan_with_ray``'s default ``units_per_worker`` (8) units at once, unless the
job's ``options`` give another: a unit's wall time then includes the time it shares its worker's
core with the others in flight there, so ``unit_costs`` is a unit's latency, not what it takes of
a worker.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from scanner import StaticCredentials
from scanner.distributed import (
    AssumedRoleSource,
    DirectoryRunnerFactory,
    UnitReport,
    UnitRunner,
    WorkerScanConfig,
    WorkerSlot,
    WorkUnit,
    keep_ray_on_loopback,
    scan_with_ray,
    sizes_from,
)
from scanner.scandir import ScanDirectory, ScanParams

__all__ = ["MeasuredRunnerFactory", "scan", "start_ray", "unit_costs"]


def _usage() -> dict[str, float]:
    """This process's CPU so far and its peak RSS (as ``common.peak_rss_mb``, without importing it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports kilobytes, macOS bytes
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss * scale / 2**20}


@dataclass(frozen=True, slots=True)
class MeasuredRunnerFactory:
    """The default runner, plus the worker's own CPU and peak RSS in each unit's report summary
    (``worker_usage``: ``cpu_s`` since the runner opened, ``peak_rss_mb`` of the process)."""

    inner: DirectoryRunnerFactory

    @contextlib.asynccontextmanager
    async def open(self, slot: WorkerSlot) -> AsyncIterator[UnitRunner]:
        opened = _usage()["cpu_s"]
        async with self.inner.open(slot) as runner:

            async def run(unit: WorkUnit) -> UnitReport:
                report = await runner(unit)
                now = _usage()
                usage = {"cpu_s": now["cpu_s"] - opened, "peak_rss_mb": now["peak_rss_mb"]}
                return replace(report, summary={**report.summary, "worker_usage": usage})

            yield run


def _workers(reports: tuple[UnitReport, ...]) -> dict[int, dict[str, float]]:
    """Per worker process, its CPU to its last unit's end and its peak RSS (cumulative: the max)."""
    workers: dict[int, dict[str, float]] = {}
    for report in reports:
        usage = report.summary.get("worker_usage")
        if usage is None or report.worker is None:
            continue  # a unit given up in the driver: no worker ran it to the end
        seen = workers.setdefault(report.worker.pid, {"cpu_s": 0.0, "peak_rss_mb": 0.0})
        seen["cpu_s"] = max(seen["cpu_s"], usage["cpu_s"])
        seen["peak_rss_mb"] = max(seen["peak_rss_mb"], usage["peak_rss_mb"])
    return workers


def unit_costs(reports: tuple[UnitReport, ...]) -> dict[str, Any]:
    """A least-squares line through the units' wall times on their workers against their records:
    ``fixed_ms``, what a unit costs whatever its size (its first round trips, its commit), and
    ``us_per_record``, what each record adds."""
    points = [(report.records, report.duration_s) for report in reports if report.worker is not None]
    n = len(points)
    if n < 2:
        return {"units": n, "fixed_ms": None, "us_per_record": None}
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return {
        "units": n,
        "mean_ms": round(mean_y * 1e3, 1),
        "fixed_ms": round((mean_y - slope * mean_x) * 1e3, 1),
        "us_per_record": round(slope * 1e6, 2),
    }


def start_ray(num_cpus: int) -> float:
    """Start Ray on this machine (loopback only, no dashboard); the seconds it took."""
    keep_ray_on_loopback()  # before ray is imported: its servers listen on 127.0.0.1 only
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        log_to_driver=False,
    )
    return time.perf_counter() - started


def scan(job: dict[str, Any], workers: int, output_dir: str) -> dict[str, Any]:
    """One measured scan of the job's units into ``output_dir`` with ``workers`` workers (Ray running)."""
    from benchmarks.clients.common import Measure  # here, not in the workers (see the module)

    management = functools.partial(StaticCredentials, job["access_key_id"], job["access_key_secret"])
    config = WorkerScanConfig(
        account_credentials=AssumedRoleSource(
            source=management, sts_endpoint=job["sts_endpoint"], allow_insecure_http=True
        ),
        endpoints=dict(job["endpoints"]),
        allow_insecure_http=True,
    )
    accounts = sorted(job["accounts"])
    units = [WorkUnit(account, region) for account in accounts for region in job["regions"]]
    previous = job.get("sizes_from")
    params = ScanParams(
        format="jsonl", filters={}, regions=tuple(sorted(job["regions"])), accounts=tuple(accounts)
    )

    def factory(run_id: str) -> MeasuredRunnerFactory:
        return MeasuredRunnerFactory(DirectoryRunnerFactory(config, output_dir, params, run_id))

    measure = Measure()
    measure.start()
    if previous is not None:  # as eas-scan --engine ray does with an earlier scan in its directory
        units = sizes_from(units, ScanDirectory.open(Path(previous)))
    summary = scan_with_ray(
        config,
        output_dir,
        units=units,
        params=params,
        workers=workers,
        runner_factory=factory,
        **job.get("options", {}),
    )
    measure.stop()
    used = _workers(summary.reports)
    document = summary.to_dict()
    return measure.result(
        summary.records,
        # The driver's CPU (``Measure``) plus the workers' own.
        cpu_s=measure.cpu_s + sum(w["cpu_s"] for w in used.values()),
        driver_cpu_s=measure.cpu_s,
        workers_cpu_s=[round(w["cpu_s"], 3) for w in used.values()],
        peak_rss_mb=max((w["peak_rss_mb"] for w in used.values()), default=0.0),
        workers_peak_rss_mb=[round(w["peak_rss_mb"], 1) for w in used.values()],
        driver_peak_rss_mb=measure.peak_rss_mb,
        unit_costs=unit_costs(summary.reports),
        errors=len(document["failures"]),
        requests=document["requests"],
        throttled=document["throttled"],
        failed_requests=document["retries"] - document["throttled"],
        summary={
            "complete": summary.complete,
            "units": document["units"],
            "workers": document["workers"],
        },
    )


def main() -> None:
    """The phased protocol of ``benchmarks.harness.run_phased_client``: Ray starts once, then one
    measured scan per entry of the job's ``workers`` (a list), each into ``output_dirs[i]``."""
    job: dict[str, Any] = orjson.loads(sys.stdin.buffer.readline())
    ray_init_s = start_ray(job.get("num_cpus", 2))
    import ray

    try:
        for workers, output_dir in zip(job["workers"], job["output_dirs"], strict=True):
            _answer({"ready": workers})
            if sys.stdin.buffer.readline().strip() != b"go":
                return
            _answer({**scan(job, workers, output_dir), "ray_init_s": round(ray_init_s, 3)})
    finally:
        ray.shutdown()


def _answer(value: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
