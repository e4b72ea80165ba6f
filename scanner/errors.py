"""The exceptions eas-fleet-scanner raises, and the data each one carries.

Imports nothing from ``scanner``, so every layer (and the simulator) can use it.

::

    ScannerError
    ├── ConfigError(ScannerError, ValueError)   bad arguments or configuration; never retried
    ├── CredentialsError                        no usable credentials found, or unreadable
    ├── UsageError(ScannerError, RuntimeError)  misuse: reopening a closed Scanner, scan() outside it
    ├── ScanFailedError                         fatal for the whole scan (e.g. every region refused)
    └── RequestError                            one API call failed: .region .action .service ...
        ├── TransportError                      no usable HTTP response
        │   ├── RequestTimeout                  connect/read/total timeout (incl. bare asyncio.TimeoutError)
        │   ├── NetworkError                    refused, reset, disconnected mid-response
        │   └── ResponseTooLargeError           a body over the size cap: never retried
        ├── DecodeError                         a response that is not the JSON we expect
        └── ApiError                            the API answered with an error: .status .code .message
            ├── ThrottledError                  over a rate limit; .retry_after_ms when the server said
            ├── ServerError                     5xx, InternalError, ServiceUnavailable: transient
            ├── AuthError                       bad key, bad signature, permission denied: never retried
            │   └── ClockSkewError              the request's timestamp was refused: the local clock is off
            ├── NotFoundError                   the region or service is gone (or a 404 without a code)
            └── BadRequestError                 any other 4xx: never retried

Which code or status becomes which class is decided in one table, ``scanner.eas.faults``; whether a
class is worth retrying is decided by the retry policy. Errors carry data, not just strings, and no
error ever carries a secret: whatever came from a server is redacted before it gets here
(``scanner.client.redact``).

``unwrap_group(exc)`` is the package's one policy for exception groups (task groups wrap errors in
them): the error itself when every leaf is of one type, else the group. The scanner applies it to
what it raises; a caller running scans in its own task group can apply it too.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "ClockSkewError",
    "ConfigError",
    "CredentialsError",
    "DecodeError",
    "NetworkError",
    "NotFoundError",
    "RequestError",
    "RequestTimeout",
    "ResponseTooLargeError",
    "ScanFailedError",
    "ScannerError",
    "ServerError",
    "ThrottledError",
    "TransportError",
    "UsageError",
    "unwrap_group",
]


class ScannerError(Exception):
    """Base class of every error eas-fleet-scanner raises on purpose."""


class ConfigError(ScannerError, ValueError):
    """An argument, flag or configuration value is invalid. The message names it and the fix."""


class CredentialsError(ScannerError):
    """No credentials could be found or loaded. The message says where we looked."""


class UsageError(ScannerError, RuntimeError):
    """The library was used out of order (e.g. a closed Scanner reused)."""


class ScanFailedError(ScannerError):
    """The scan as a whole cannot produce anything useful (e.g. every region refused us)."""


class RequestError(ScannerError):
    """One API request failed.

    Every request error names where it happened; API errors also carry what the server said.
    """

    def __init__(
        self,
        message: str,
        *,
        region: str | None = None,
        action: str | None = None,
        service: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.region = region
        self.action = action
        self.service = service
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after_ms = retry_after_ms

    @property
    def kind(self) -> str:
        """The short name of the failure, for summaries: the API code if any, else the class."""
        return self.code or type(self).__name__

    def __str__(self) -> str:
        where = " ".join(
            part
            for part in (
                self.action,
                f"region={self.region}" if self.region else None,
                f"service={self.service}" if self.service else None,
            )
            if part
        )
        detail = []
        if self.status is not None:
            detail.append(f"HTTP {self.status}")
        if self.code:
            detail.append(self.code)
        if self.request_id:
            detail.append(f"RequestId={self.request_id}")
        text = self.message
        if detail:
            text = f"{text} ({', '.join(detail)})"
        return f"{where}: {text}" if where else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransportError(RequestError):
    """No usable HTTP response arrived."""


class RequestTimeout(TransportError):
    """The request did not finish in time (connect, read or total timeout)."""


class NetworkError(TransportError):
    """The connection failed: refused, reset, or closed in the middle of a response."""


class ResponseTooLargeError(TransportError):
    """The response body (decompressed) was larger than ``ConnectionLimits.max_response_bytes``.

    Reading stopped at the cap and the connection was closed. Never retried: the same request
    would get the same answer.
    """

    @property
    def kind(self) -> str:
        return "ResponseTooLarge"


class DecodeError(RequestError):
    """The response body is not the JSON we expect: not JSON, truncated, or the wrong shape."""


class ApiError(RequestError):
    """The API answered with an error body or status."""


class ThrottledError(ApiError):
    """The request was over a rate limit. ``retry_after_ms`` is the server's hint, if it gave one."""


class ServerError(ApiError):
    """A transient server-side failure (5xx, InternalError, ServiceUnavailable)."""


class AuthError(ApiError):
    """Authentication or authorisation failed. Retrying cannot help."""


class ClockSkewError(AuthError):
    """The API refused the request's timestamp: the local clock is off. The message says by how much."""


class NotFoundError(ApiError):
    """The API answered 404: with a code that says what was not found, or without one (a gateway).

    Only the code tells a deleted service from a wrong path; without one, ``kind`` is ``HTTP404``.
    """

    @property
    def kind(self) -> str:
        if self.code:
            return self.code
        return f"HTTP{self.status}" if self.status is not None else type(self).__name__


class BadRequestError(ApiError):
    """The request itself is wrong (any other 4xx). Retrying cannot help."""


def unwrap_group(exc: BaseException) -> BaseException:
    """An error as a caller should see it, out of the exception groups task groups wrap it in.

    The one policy for the whole package: when every error inside (at any depth) is of one type,
    the first of them; otherwise the group itself, so that no different error is hidden.
    """
    leaves = _leaves(exc)
    if leaves and all(type(leaf) is type(leaves[0]) for leaf in leaves):
        return leaves[0]
    return exc


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
