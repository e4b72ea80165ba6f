"""The wire layer: credentials, the transport, and signed calls to the EAS API.

``credentials`` finds and refreshes the access key, ``http`` is the transport seam (a request
in, a response out), ``transport`` is its aiohttp implementation and maps aiohttp's failures,
``signer`` signs each request cheaply, ``redact`` keeps the credentials out of whatever a server
sends back, and ``api.EasClient`` puts them together into one call per EAS operation.
"""

from __future__ import annotations

from scanner.client.api import EasClient, random_nonce
from scanner.client.credentials import (
    Credentials,
    CredentialsProvider,
    DefaultCredentials,
    RefreshingCredentials,
    StaticCredentials,
)
from scanner.client.http import AsyncTransport, Request, Response
from scanner.client.transport import AiohttpTransport, ConnectionLimits, Timeouts

__all__ = [
    "AiohttpTransport",
    "AsyncTransport",
    "ConnectionLimits",
    "Credentials",
    "CredentialsProvider",
    "DefaultCredentials",
    "EasClient",
    "RefreshingCredentials",
    "Request",
    "Response",
    "StaticCredentials",
    "Timeouts",
    "random_nonce",
]
