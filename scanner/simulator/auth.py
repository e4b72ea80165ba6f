"""Who may call the simulator: configured AccessKeys (optionally STS tokens), checked per request.

The signature itself is checked by ``scanner.eas.signing.verify`` (shared with the client, and
proven against the official SDK by the tests), with the server's freshness rules on top
(``scanner.simulator.acceptance``); this module adds what only a server knows: which keys exist,
which STS token goes with which key, and which nonces were already used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from scanner.eas import faults as eas_faults
from scanner.eas.signing import SignatureError, VerifiedRequest
from scanner.simulator.acceptance import NonceCache, accept

__all__ = ["AccessKey", "AuthFailure", "Authenticator"]


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AccessKey pair the simulator accepts; with ``security_token``, only with that STS token."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


class AuthFailure(Exception):
    """A request failed authentication: answer with this code, status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message


class Authenticator:
    """Verifies signed requests against the configured keys. ``wall`` gives the server's UTC time."""

    __slots__ = ("_keys", "_nonces", "_wall")

    def __init__(self, keys: Iterable[AccessKey], wall: Callable[[], datetime]) -> None:
        self._keys = {key.access_key_id: key for key in keys}
        self._wall = wall
        self._nonces = NonceCache()

    def http_date(self) -> str:
        """The server's clock as an HTTP ``Date`` (sent with auth failures, so skew can be named)."""
        return format_datetime(self._wall(), usegmt=True)

    def add(self, key: AccessKey) -> None:
        self._keys[key.access_key_id] = key

    def _secret_for(self, access_key_id: str) -> str | None:
        key = self._keys.get(access_key_id)
        return None if key is None else key.access_key_secret

    def authenticate(
        self,
        *,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> VerifiedRequest:
        """The verified request, or ``AuthFailure`` with the code the API would answer."""
        try:
            verified = accept(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body,
                secret_for=self._secret_for,
                now=self._wall(),
                nonces=self._nonces,
            )
        except SignatureError as exc:
            raise AuthFailure(exc.code, exc.status, exc.message) from None
        expected = self._keys[verified.access_key_id].security_token
        if verified.security_token != expected:
            spec = eas_faults.INVALID_SECURITY_TOKEN
            detail = "missing" if verified.security_token is None else "does not match the AccessKey"
            raise AuthFailure(spec.code, spec.status, f"{spec.message} (the security token is {detail})")
        return verified
