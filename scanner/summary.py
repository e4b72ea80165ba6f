"""How a scan went: the final ``ScanSummary`` and its parts, and the live statistics.

``stream.summary`` is a ``ScanSummary`` once the stream has ended: ``regions`` maps each region to
a ``RegionSummary``, ``failures`` lists a ``Failure`` for each region or service that could not
be listed after retries, ``verdicts`` counts services by ``ServiceVerdict`` value, and
``accounts`` (multi-account scans only) maps each account to an ``AccountSummary``. Each has
``to_dict()``, the JSON form ``eas-scan --summary`` writes. While the scan runs,
``stream.statistics()`` returns a ``ScanStatistics`` snapshot, with a ``RegionStatistics`` per
region, for progress displays.

``ScanSummary`` is also exported by ``scanner`` itself. The types are defined where the scan
counts (``scanner.engine``); this module is where a user imports them from.
"""

from __future__ import annotations

from scanner.engine.stats import (
    AccountSummary,
    Failure,
    RegionStatistics,
    RegionSummary,
    ScanStatistics,
    ScanSummary,
    ServiceVerdict,
)

__all__ = [
    "AccountSummary",
    "Failure",
    "RegionStatistics",
    "RegionSummary",
    "ScanStatistics",
    "ScanSummary",
    "ServiceVerdict",
]
