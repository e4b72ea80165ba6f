"""``python -m benchmarks run [--quick] [--json PATH]``: every scenario, a table, and a JSON file.

Scenarios (one module each): ``throughput``, ``latency``, ``ratelimit``, ``realistic``, ``memory``,
``signing``, ``formats``, ``resume``, ``diff``, ``org``, ``scaleout``.
The simulator always runs in its own process, and so does every measured client. ``--quick`` runs
a small version of each (under a minute) and fails unless every scanner run is exact; it never
checks a speed. The JSON keys are listed in the README's Performance section.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["goals", "main"]

SCENARIOS = (
    "throughput",
    "latency",
    "ratelimit",
    "realistic",
    "memory",
    "signing",
    "formats",
    "resume",
    "diff",
    "org",
    "scaleout",
)
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"

_COLUMNS = (
    ("wall_s", "wall s", "{:.2f}"),
    ("records", "records", "{:d}"),
    ("records_per_s", "rec/s", "{:.0f}"),
    ("requests", "requests", "{:d}"),
    ("cpu_us_per_record", "CPU µs/rec", "{:.1f}"),
    ("peak_rss_mb", "RSS MB", "{:.0f}"),
    ("throttled_fraction", "throttled", "{:.3f}"),
    ("achieved_qps", "ok qps", "{:.1f}"),
    ("errors", "errors", "{:d}"),
    ("exact", "exact", "{}"),
)


def _runs(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = []
    for scenario in SCENARIOS:
        for client, value in results.get(scenario, {}).items():
            if isinstance(value, dict) and "wall_s" in value:
                rows.append((scenario, client, value))
    return rows


def _scanner_run(scenario: str, client: str) -> bool:
    """A run of the scanner (whose output must be exact), not of a baseline client."""
    return client.startswith("scanner") or scenario in ("formats", "scaleout")


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(results: dict[str, Any]) -> str:
    header = f"{'scenario':<11}{'client':<15}" + "".join(f"{title:>12}" for _, title, _ in _COLUMNS)
    lines = [header, "-" * len(header)]
    for scenario, client, run in _runs(results):
        cells = "".join(f"{_cell(run.get(key), fmt):>12}" for key, _, fmt in _COLUMNS)
        lines.append(f"{scenario:<11}{client:<15}{cells}")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def goals(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal of the issue: the measured ratio or value, the target, and whether it is met."""
    out: dict[str, dict[str, Any]] = {}

    def goal(name: str, value: float | bool | None, target: str, met: bool | None) -> None:
        out[name] = {"value": value, "target": target, "met": met}

    tp = results.get("throughput")
    if tp:
        speedup = _ratio(tp["scanner"]["records_per_s"], tp["sdk_async"]["records_per_s"])
        goal("throughput_vs_sdk_async", speedup, ">= 5", speedup is not None and speedup >= 5)
        # The median of the per-round paired ratios (benchmarks.throughput says why, not least/least).
        cpu = tp.get("cpu_ratio_vs_floor_median")
        goal("cpu_vs_floor_aiohttp", cpu, "<= 1.4", cpu is not None and cpu <= 1.4)  # issue 12
    lat = results.get("latency")
    if lat:
        ratio = _ratio(lat["scanner"]["wall_s"], lat["ideal_s"])
        goal("latency_vs_ideal", ratio, "<= 1.25", ratio is not None and ratio <= 1.25)
    rl = results.get("ratelimit")
    if rl:
        achieved = _ratio(rl["scanner"]["achieved_qps"], rl["limit_qps"])
        goal("ratelimit_achieved_vs_limit", achieved, ">= 0.9", achieved is not None and achieved >= 0.9)
        fraction = rl["scanner"]["throttled_fraction"]
        goal("ratelimit_throttled_fraction", fraction, "<= 0.05", fraction <= 0.05)
    real = results.get("realistic")
    if real:
        achieved = _ratio(real["scanner"]["achieved_qps"], real["limit_qps"])
        goal("realistic_achieved_vs_limit", achieved, ">= 0.9", achieved is not None and achieved >= 0.9)
        fraction = real["scanner"]["throttled_fraction"]
        goal("realistic_throttled_fraction", fraction, "<= 0.05", fraction <= 0.05)
        goal("realistic_exact", real["scanner"]["exact"], "yes", real["scanner"]["exact"] is True)
    mem = results.get("memory")
    if mem:
        growth = _ratio(mem["rss_large_mb"], mem["rss_small_mb"])
        goal("rss_large_vs_small", growth, "<= 1.3", growth is not None and growth <= 1.3)
        goal("rss_large_mb", mem["rss_large_mb"], "<= 200", mem["rss_large_mb"] <= 200)
    formats = results.get("formats")
    if formats:
        rss = formats["parquet"]["peak_rss_mb"]
        goal("parquet_peak_rss_mb", rss, "<= 200", rss <= 200)
        both = formats["jsonl"]["exact"] is True and formats["parquet"]["exact"] is True
        goal("formats_exact", both, "yes", both)
    resume = results.get("resume")
    if resume:
        met = resume["ratio"] is not None and resume["ratio"] <= resume["goal_ratio"]
        goal("resume_ratio", resume["ratio"], f"<= {resume['goal_ratio']}", met)
        goal("resume_exact", resume["exact"], "yes", resume["exact"] is True)
    diff = results.get("diff")
    if diff:
        goal("diff_peak_rss_mb", diff["peak_rss_mb"], "<= 400", diff["peak_rss_mb"] <= 400)
        goal("diff_exact", diff["exact"], "yes", diff["exact"] is True)
    org = results.get("org")
    if org:
        # min(summed, CPU-bound, work-bound): benchmarks.org says why each bound is there.
        bounds = (org["summed_limit_qps"], org["cpu_bound_qps"], org.get("work_bound_qps"))
        ceiling = min(bound for bound in bounds if bound)
        achieved = _ratio(org["scanner"]["achieved_qps"], ceiling)
        goal("org_achieved_vs_min_limit_cpu", achieved, ">= 0.85", achieved is not None and achieved >= 0.85)
        calls, refreshes = org["scanner"]["assume_role_calls"], org["scanner"]["token_refreshes"]
        within = calls is not None and refreshes is not None and calls <= org["accounts"] + refreshes
        goal("org_assume_role_calls", calls, "<= accounts + refreshes", within)
    scale = results.get("scaleout")
    if scale:
        ratio = scale["ray_2_vs_local"]
        goal("scaleout_ray_2_vs_local", ratio, ">= 1.3", ratio is not None and ratio >= 1.3)
    exact = [run["exact"] for scenario, client, run in _runs(results) if _scanner_run(scenario, client)]
    goal("scanner_exact", all(exact), "every scanner run", all(exact))
    return out


def run(scenarios: Sequence[str], *, quick: bool, json_path: Path) -> int:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": quick,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eas-bench-") as workdir:
        for name in scenarios:
            t0 = time.perf_counter()
            module = importlib.import_module(f"benchmarks.{name}")
            results[name] = module.run(quick=quick, workdir=Path(workdir))
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["goals"] = goals(results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")

    print(table(results))
    if "signing" in results:
        print(f"\nsigning: {results['signing']['us_per_request']} µs per signed request")
    if "throughput" in results:
        print(f"orjson floor: {results['throughput']['orjson_cpu_us_per_record']} µs CPU per record")
    if "latency" in results:
        lat = results["latency"]
        print(
            f"latency ideal: {lat['ideal_s']} s ({lat['ideal_rounds']} round trips of"
            f" {lat['latency_ms']:.0f} ms, depth {lat['ideal_depth']});"
            f" floor CPU {lat['floor_cpu_s']} s = {lat['floor_cpu_share']} of it"
        )
    if "realistic" in results:
        real = results["realistic"]
        print(
            f"realistic: {real['latency_ms']:.0f} ms, {real['limit_qps']:.0f} qps per (region, action)"
            f" untold, {real['error_rate']:.0%} 500/503; ok qps = admitted in the busiest region"
        )
    print("\ngoals:")
    for name, goal in results["goals"].items():
        mark = "met" if goal["met"] else "MISSED"
        print(f"  {name:<32}{goal['value']!s:>10}  target {goal['target']:<18}{mark}")
    print(f"\n{results['total_s']} s in all; written to {json_path}")
    inexact = [
        f"{scenario}/{client}"
        for scenario, client, r in _runs(results)
        if _scanner_run(scenario, client) and r["exact"] is not True
    ]
    inexact += [name for name in ("resume", "diff") if name in results and results[name]["exact"] is not True]
    if inexact:
        print(f"scanner output not exact: {', '.join(inexact)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the scenarios")
    run_parser.add_argument("--quick", action="store_true", help="a small version of every scenario")
    run_parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default: {DEFAULT_JSON}")
    run_parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    args = parser.parse_args(argv)
    return run(args.only or SCENARIOS, quick=args.quick, json_path=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
