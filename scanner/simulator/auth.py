"""Who may call the simulator: configured AccessKeys (optionally STS tokens), checked per request.

The signature itself is checked by ``scanner.eas.signing.verify`` (shared with the client, and
proven against the official SDK by the tests), with the server's freshness rules on top
(``scanner.simulator.acceptance``); this module adds what only a server knows: which keys exist,
which STS token goes with which key, and which nonces were already used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Final

from scanner.eas import faults as eas_faults
from scanner.eas.signing import SignatureError, VerifiedRequest
from scanner.simulator.acceptance import NonceCache, accept

__all__ = ["MISSING_SECURITY_TOKEN", "SECURITY_TOKEN_EXPIRED", "AccessKey", "AuthFailure", "Authenticator"]

#: (code, HTTP status, message) of a temporary key past its Expiration, and of one sent without
#: its token (the codes STS documents; the statuses are our choice, like the other 4xx auth codes).
SECURITY_TOKEN_EXPIRED: Final = ("InvalidSecurityToken.Expired", 400, "Specified SecurityToken is expired.")
MISSING_SECURITY_TOKEN: Final = ("MissingSecurityToken", 400, "SecurityToken is mandatory for this action.")


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AccessKey pair the simulator accepts; with ``security_token``, only with that STS token.

    ``expires_at`` (Unix seconds): temporary credentials, refused from then on with
    ``InvalidSecurityToken.Expired``, and without their token with ``MissingSecurityToken``.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    expires_at: int | None = None


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

    def expire(self, access_key_id: str, at: int) -> bool:
        """Make a temporary key expire at ``at`` (Unix seconds) if it expires later; True if changed."""
        key = self._keys.get(access_key_id)
        if key is None or key.expires_at is None or key.expires_at <= at:
            return False
        self._keys[access_key_id] = dataclasses.replace(key, expires_at=at)
        return True

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
        key = self._keys[verified.access_key_id]
        if verified.security_token != key.security_token:
            if key.expires_at is not None and verified.security_token is None:
                raise AuthFailure(*MISSING_SECURITY_TOKEN)
            spec = eas_faults.INVALID_SECURITY_TOKEN
            detail = "missing" if verified.security_token is None else "does not match the AccessKey"
            raise AuthFailure(spec.code, spec.status, f"{spec.message} (the security token is {detail})")
        if key.expires_at is not None and self._wall().timestamp() >= key.expires_at:
            raise AuthFailure(*SECURITY_TOKEN_EXPIRED)
        return verified
