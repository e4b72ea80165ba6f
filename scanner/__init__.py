"""eas-fleet-scanner: a complete, streaming inventory of PAI-EAS service instances.

::

    async with Scanner(credentials=StaticCredentials(ak, secret)) as s:
        stream = s.scan(regions="all")
        async for record in stream:
            ...
        stream.summary
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from scanner.client.api import ClientStatistics, EasClient
from scanner.client.credentials import (
    Credentials,
    CredentialsProvider,
    DefaultCredentials,
    StaticCredentials,
)
from scanner.client.transport import ConnectionLimits, Timeouts
from scanner.eas.endpoints import EndpointType
from scanner.eas.models import Page, Region
from scanner.eas.params import InstanceQuery, ServiceQuery
from scanner.engine.config import Concurrency, Consistency, RateLimit, RetryPolicy
from scanner.engine.stats import (
    Failure,
    RegionStatistics,
    RegionSummary,
    ScanStatistics,
    ScanSummary,
    ServiceVerdict,
)
from scanner.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ConfigError,
    CredentialsError,
    DecodeError,
    NetworkError,
    NotFoundError,
    RequestError,
    RequestTimeout,
    ScanFailedError,
    ScannerError,
    ServerError,
    ThrottledError,
    TransportError,
    UsageError,
)
from scanner.gctuning import batch_gc
from scanner.scanner import Scanner, ScanStream

try:
    __version__ = version("eas-fleet-scanner")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "ClientStatistics",
    "Concurrency",
    "ConfigError",
    "ConnectionLimits",
    "Consistency",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "DecodeError",
    "DefaultCredentials",
    "EasClient",
    "EndpointType",
    "Failure",
    "InstanceQuery",
    "NetworkError",
    "NotFoundError",
    "Page",
    "RateLimit",
    "Region",
    "RegionStatistics",
    "RegionSummary",
    "RequestError",
    "RequestTimeout",
    "RetryPolicy",
    "ScanFailedError",
    "ScanStatistics",
    "ScanStream",
    "ScanSummary",
    "Scanner",
    "ScannerError",
    "ServerError",
    "ServiceQuery",
    "ServiceVerdict",
    "StaticCredentials",
    "ThrottledError",
    "Timeouts",
    "TransportError",
    "UsageError",
    "__version__",
    "batch_gc",
]
