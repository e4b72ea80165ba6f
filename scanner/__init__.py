"""eas-fleet-scanner: a complete, streaming inventory of PAI-EAS service instances.

::

    async with Scanner(credentials=StaticCredentials(ak, secret)) as s:
        stream = s.scan(regions="all")
        async for record in stream:
            ...
        stream.summary

The names here are what a library user needs: the scanner and its stream and summary, every
configuration type ``Scanner`` and ``scan()`` accept (``Organization`` and ``Account`` for
scans of several accounts), the credential types, and the error base
classes worth catching. The rest of the public API is in these modules, each with its own
``__all__``; everything else in the package is internal and may change:

- ``scanner.events``: what ``ScanStream.events()`` yields (``UnitsPlanned``, ``UnitEnded``, batches)
- ``scanner.summary``: ``ScanSummary`` and its parts (``RegionSummary``, ``Failure``...) and the
  live ``ScanStatistics``
- ``scanner.query``: the listing filters and their allowed values (``Role``, ``Order``...),
  ``MAX_PAGE_SIZE``
- ``scanner.endpoints``: region ids and endpoint URLs (``validate_region``, ``EndpointResolver``)
- ``scanner.errors``: the whole exception tree, and ``unwrap_group``
- ``scanner.testing``: ``FakeClock`` and ``MockTransport``
- ``scanner.client``: the transport seam and ``EasClient``
"""

from __future__ import annotations

from importlib import metadata as _metadata

from scanner.client.credentials import (
    Credentials,
    CredentialsProvider,
    DefaultCredentials,
    StaticCredentials,
)
from scanner.client.transport import ConnectionLimits, Timeouts
from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.engine.config import Concurrency, Consistency, RateLimit, RetryPolicy
from scanner.engine.stats import ScanSummary
from scanner.errors import (
    ApiError,
    ConfigError,
    CredentialsError,
    RequestError,
    ScanFailedError,
    ScannerError,
)
from scanner.gctuning import batch_gc
from scanner.org.sources import Account, Organization
from scanner.scanner import Scanner, ScanStream

try:
    __version__ = _metadata.version("eas-fleet-scanner")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Account",
    "ApiError",
    "Concurrency",
    "ConfigError",
    "ConnectionLimits",
    "Consistency",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "DefaultCredentials",
    "InstanceQuery",
    "Organization",
    "RateLimit",
    "RequestError",
    "RetryPolicy",
    "ScanFailedError",
    "ScanStream",
    "ScanSummary",
    "Scanner",
    "ScannerError",
    "ServiceQuery",
    "StaticCredentials",
    "Timeouts",
    "__version__",
    "batch_gc",
]
