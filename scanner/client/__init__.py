"""The wire layer: credentials, one aiohttp session, and signed calls to the EAS API.

``credentials`` finds and refreshes the access key, ``transport`` owns the aiohttp session and
maps its failures, ``signer`` signs each request cheaply, and ``api.EasClient`` puts them
together into one call per EAS operation.
"""

from __future__ import annotations

from scanner.client.api import ClientStatistics, EasClient, random_nonce
from scanner.client.credentials import (
    Credentials,
    CredentialsProvider,
    DefaultCredentials,
    RefreshingCredentials,
    StaticCredentials,
)
from scanner.client.transport import ConnectionLimits, RawResponse, Timeouts, Transport

__all__ = [
    "ClientStatistics",
    "ConnectionLimits",
    "Credentials",
    "CredentialsProvider",
    "DefaultCredentials",
    "EasClient",
    "RawResponse",
    "RefreshingCredentials",
    "StaticCredentials",
    "Timeouts",
    "Transport",
    "random_nonce",
]
