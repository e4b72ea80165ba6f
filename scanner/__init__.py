"""eas-fleet-scanner: a complete, streaming inventory of PAI-EAS service instances."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("eas-fleet-scanner")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "CredentialsError",
    "DecodeError",
    "NetworkError",
    "NotFoundError",
    "RequestError",
    "RequestTimeout",
    "ScanFailedError",
    "ScannerError",
    "ServerError",
    "ThrottledError",
    "TransportError",
    "UsageError",
    "__version__",
]
