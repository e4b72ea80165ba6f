"""What every client process shares: the clock, its own CPU and memory, and the digest of its output."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from scanner.simulator.digest import DigestBuilder, content_hash

__all__ = ["Measure", "output_digest"]

_TAGS = ("ClusterId", "ServiceName", "Service")


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _peak_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@dataclass
class Measure:
    """Wall and CPU time from ``start()`` to ``stop()``; peak RSS of the whole process at ``stop()``."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    sys_s: float = 0.0
    peak_rss_mb: float = 0.0
    _t0: float = field(default=0.0, repr=False)
    _c0: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def start(self) -> None:
        self._c0 = _cpu()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self._t0
        user, system = _cpu()
        self.sys_s = system - self._c0[1]
        self.cpu_s = user - self._c0[0] + self.sys_s
        self.peak_rss_mb = _peak_rss_mb()

    def result(self, records: int, **extra: Any) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "cpu_sys_s": self.sys_s,
            "peak_rss_mb": self.peak_rss_mb,
            "records": records,
            **extra,
        }


def output_digest(path: str, loads: Callable[[bytes], Any] = orjson.loads) -> tuple[int, dict[str, Any]]:
    """(lines, content digest) of a JSON Lines file of records, read a line at a time."""
    builder = DigestBuilder()
    lines = 0
    with open(path, "rb") as lines_in:
        for line in lines_in:
            record = loads(line)
            cluster_id, service_name = record["ClusterId"], record["ServiceName"]
            for tag in _TAGS:
                record.pop(tag, None)
            builder.add_hash(content_hash(cluster_id, service_name, record))
            lines += 1
    return lines, builder.result().to_dict()
