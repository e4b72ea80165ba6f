"""Shared machinery: the simulator in its own process, each measured client in its own process.

A scenario starts ``python -m scanner.simulator`` (``SimulatorProcess``), reads its one JSON line
(endpoints, keys, instances), and runs each client with ``run_client``: ``python -m
benchmarks.clients NAME`` gets its job as JSON on stdin and answers one JSON line on stdout (wall
time, records, its own CPU time and peak RSS from ``getrusage``, and the digest of what it wrote).
The harness reads the simulator's counters before and after (``/_simulator/counters``: requests,
throttles) and compares the digest with the simulator's ground truth (``/_simulator/fleet-digest``),
so no figure depends on the client reporting on itself honestly, except its own CPU and memory.
``run_phased_client`` does the same for several runs of one client process that share a costly
set-up (one Ray start for a scan with 1 worker and one with 2), and ``SimulatorProcess.cpu_s`` adds
the simulator's own CPU for each run (it shares the machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import orjson

__all__ = ["ROOT", "ClientJob", "SimulatorProcess", "run_client", "run_phased_client"]

ROOT = Path(__file__).resolve().parent.parent


class SimulatorProcess:
    """``python -m scanner.simulator ARGS`` as a subprocess, for the length of a ``with`` block."""

    def __init__(self, args: Sequence[str], *, startup_timeout: float = 300.0) -> None:
        self._args = [str(a) for a in args]
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "scanner.simulator", *self._args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=10)
            raise RuntimeError(
                f"the simulator exited ({self._proc.returncode}) before listening: {self._args}"
            )
        self.info = orjson.loads(line)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_s(self) -> float | None:
        """The simulator process's CPU time so far (user + system), from ``/proc`` (None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of the file (utime, stime), counted after the ")" closing field 2.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self.info["endpoints"])

    @property
    def instances(self) -> int:
        return int(self.info["instances"])

    def _admin(self, route: str, body: Mapping[str, Any] | None = None, method: str = "GET") -> Any:
        base = next(iter(self.info["endpoints"].values()))
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(f"{base}/_simulator/{route}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"simulator admin {route}: {exc.code} {exc.read()[:500]!r}") from None

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("counters")
        return result

    def reset_counters(self) -> None:
        self._admin("counters/reset", {}, "POST")

    def truth(self) -> dict[str, Any]:
        """The content digest of the fleet: every instance, every field (no churn runs here)."""
        result: dict[str, Any] = self._admin("fleet-digest?content=1")
        return result

    def client_job(self, **extra: Any) -> dict[str, Any]:
        return {
            "endpoints": self.endpoints,
            "access_key_id": self.info["access_key_id"],
            "access_key_secret": self.info["access_key_secret"],
            **extra,
        }


ClientJob = dict[str, Any]


def _successes(counters: Mapping[str, Any]) -> int:
    return int(counters["responses"].get("200", 0))


def run_client(
    name: str,
    sim: SimulatorProcess,
    job: ClientJob,
    *,
    truth: Mapping[str, Any] | None,
    timeout: float = 900.0,
    keep: Sequence[str] = (),
) -> dict[str, Any]:
    """Run client ``name`` in its own process against ``sim``; the RUN dict of the issue, and more.

    ``truth`` is the simulator's digest the output must equal for ``exact`` (None: not checked).
    ``keep``: more keys of the client's answer to copy into the RUN dict. The RUN dict also has the
    simulator's CPU for the run (``sim_cpu_s``, ``sim_cpu_us_per_record``).
    """
    sim.reset_counters()
    sim_cpu = sim.cpu_s()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.clients", name],
        cwd=ROOT,
        input=orjson.dumps(job),
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    outer_s = time.perf_counter() - started
    sim_cpu_s = _cpu_since(sim, sim_cpu)
    if done.returncode != 0:
        raise RuntimeError(f"client {name} failed ({done.returncode}):\n{done.stderr.decode()[-4000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return _run_dict(sim, result, truth=truth, outer_s=outer_s, sim_cpu_s=sim_cpu_s, keep=keep)


def run_phased_client(
    module: str,
    sim: SimulatorProcess,
    job: ClientJob,
    runs: int,
    *,
    timeout: float = 900.0,
    keep: Sequence[str] = (),
    after: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``python -m MODULE``: one client process for ``runs`` measured runs that share its set-up
    (one Ray start for two scans, say); their RUN dicts, in order (``exact`` left None).

    The protocol: the client reads the job (one JSON line on stdin); for each run it writes a line
    ``{"ready": ...}``, waits for a line ``go``, runs, and writes its answer line (as ``run_client``'s
    clients do). Between "ready" and "go" the simulator's counters are reset and its CPU read, so
    each RUN dict counts its own run only; ``process_s`` is from "go" to the answer. ``after`` is
    called with each RUN dict before the next run starts (to check its output, say).
    """
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        assert process.stdin is not None
        assert process.stdout is not None
        out: list[dict[str, Any]] = []
        try:
            process.stdin.write(orjson.dumps(job) + b"\n")
            process.stdin.flush()
            for _ in range(runs):
                if _next_line(process.stdout, "ready") is None:
                    break
                sim.reset_counters()
                sim_cpu = sim.cpu_s()
                started = time.perf_counter()
                process.stdin.write(b"go\n")
                process.stdin.flush()
                result = _next_line(process.stdout, "wall_s")
                if result is None:
                    break
                outer_s = time.perf_counter() - started
                sim_cpu_s = _cpu_since(sim, sim_cpu)
                run = _run_dict(sim, result, truth=None, outer_s=outer_s, sim_cpu_s=sim_cpu_s, keep=keep)
                out.append(run)
                if after is not None:
                    after(run)
            process.stdin.close()
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0 or len(out) < runs:
            errors.seek(0)
            tail = errors.read()[-4000:].decode(errors="replace")
            raise RuntimeError(
                f"client {module} failed ({process.returncode}) after {len(out)} runs:\n{tail}"
            )
    return out


def _next_line(stream: IO[bytes], key: str) -> dict[str, Any] | None:
    """The next line of ``stream`` that is a JSON object with ``key`` (others, e.g. a library's
    stray print, are skipped); None at the end of the stream."""
    for line in stream:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and key in value:
            return value
    return None


def _cpu_since(sim: SimulatorProcess, before: float | None) -> float | None:
    after = sim.cpu_s()
    return None if before is None or after is None else after - before


def _run_dict(
    sim: SimulatorProcess,
    result: dict[str, Any],
    *,
    truth: Mapping[str, Any] | None,
    outer_s: float,
    sim_cpu_s: float | None,
    keep: Sequence[str],
) -> dict[str, Any]:
    records = int(result["records"])
    wall = float(result["wall_s"])
    try:
        counters: dict[str, Any] | None = sim.counters()
    except RuntimeError as exc:
        # The simulator's /_simulator/counters answers 400 once any fault (a throttle) was
        # counted ("Dict key must be str": its fault kinds are a StrEnum, which orjson refuses as
        # keys). Until that is fixed, fall back to the counts the client kept itself.
        print(f"warning: {exc}; using the client's own request counts", file=sys.stderr)
        counters = None
    if counters is not None:
        requests = int(counters["total_requests"])
        throttled = int(counters["throttled_total"])
        success = _successes(counters)
        by_region = counters["requests"]
        throttled_by_region = counters["throttled"]
    else:
        requests = int(result["requests"])
        throttled = int(result["throttled"])
        success = requests - throttled - int(result.get("failed_requests", 0))
        by_region = throttled_by_region = None
    run: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "records": records,
        "records_per_s": round(records / wall, 1) if wall else None,
        "requests": requests,
        "cpu_us_per_record": round(result["cpu_s"] / records * 1e6, 2) if records else None,
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "throttled": throttled,
        "throttled_fraction": round(throttled / requests, 4) if requests else 0.0,
        "achieved_qps": round(success / wall, 1) if wall else None,
        "errors": int(result.get("errors", 0)),
        "exact": None
        if truth is None
        else result["digest"] == {"count": truth["count"], "digest": truth["digest"]},
        "cpu_s": round(result["cpu_s"], 3),
        "cpu_sys_s": round(result["cpu_sys_s"], 3),
        "process_s": round(outer_s, 3),
        "counts_from": "simulator" if counters is not None else "client",
        "requests_by_region": by_region,
        "throttled_by_region": throttled_by_region,
        "sim_cpu_s": None if sim_cpu_s is None else round(sim_cpu_s, 3),
        "sim_cpu_us_per_record": round(sim_cpu_s / records * 1e6, 2) if sim_cpu_s and records else None,
    }
    for key in ("note", "orjson_cpu_us_per_record", "summary", *keep):
        if key in result:
            run[key] = result[key]
    return run


def fleet_args(
    *, regions: int, services: int, instances: int, max_per_service: int, seed: int = 6
) -> list[str]:
    """Simulator arguments for a custom long-tail fleet."""
    return [
        "--seed",
        str(seed),
        "--regions",
        str(regions),
        "--services-per-region",
        str(services),
        "--instances",
        str(instances),
        "--max-per-service",
        str(max_per_service),
    ]


def output_path(workdir: Path, name: str) -> str:
    return str(workdir / f"{name}.jsonl")
