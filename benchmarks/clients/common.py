"""What every client process shares: the clock, its own CPU and memory, the digest of its output,
and how a hand-made client signs a request.

Kept free of ``psutil`` and the other ``bench``-only packages: CI's quick run installs only ``.[test]``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from yarl import URL

from scanner import ScanSummary
from scanner.eas.params import API_VERSION
from scanner.eas.signing import EMPTY_BODY_SHA256, canonical_query, format_date, sign
from scanner.simulator.digest import DigestBuilder, content_hash

__all__ = ["Measure", "Request", "output_digest", "peak_rss_mb", "signed_get", "summary_counts"]

Request = tuple[URL, dict[str, str]]

_TAGS = ("ClusterId", "ServiceName", "Service")


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB."""
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
        self.peak_rss_mb = peak_rss_mb()

    def result(self, records: int, **extra: Any) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "cpu_sys_s": self.sys_s,
            "peak_rss_mb": self.peak_rss_mb,
            "records": records,
            **extra,
        }


def summary_counts(summary: ScanSummary) -> dict[str, Any]:
    """What a scanner client reports of its scan's summary: records, completeness, request counts."""
    return {
        "records": summary.records,
        "complete": summary.complete,
        "requests": summary.requests,
        "retries": summary.retries,
        "throttled": summary.throttled,
        "failures": len(summary.failures),
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


def signed_get(
    base_url: str,
    action: str,
    path: str,
    params: dict[str, str],
    *,
    access_key_id: str,
    access_key_secret: str,
    nonce: str,
    now: datetime,
) -> Request:
    """A GET of the EAS API signed with ``scanner.eas.signing.sign``: the URL and the headers, for aiohttp.

    The URL is marked already encoded, so aiohttp sends the query exactly as it was signed.
    """
    headers = {
        "host": urlsplit(base_url).netloc,
        "x-acs-action": action,
        "x-acs-version": API_VERSION,
        "x-acs-date": format_date(now),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
        "accept": "application/json",
    }
    headers["Authorization"] = sign(
        method="GET",
        canonical_uri=path,
        params=params,
        headers=headers,
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
    )
    query = canonical_query(params)
    return URL(f"{base_url}{path}?{query}" if query else f"{base_url}{path}", encoded=True), headers
