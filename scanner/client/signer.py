"""ACS3-HMAC-SHA256 signing on the hot path: everything that does not change is computed once.

``scanner.eas.signing.sign`` is the reference recipe (golden-tested against the official SDK).
This module produces byte-identical ``Authorization`` headers (a property test checks it) but,
for one (endpoint, action, credentials), pre-builds the static headers, the canonical header
block around the two per-request values (date and nonce), the ``SignedHeaders`` list, and the
HMAC's inner and outer hash states, already keyed with the secret (the inner one also fed the
algorithm line). Per request it only formats one string and finishes three SHA-256 hashes.

The HMAC is RFC 2104 spelled out over ``hashlib`` rather than ``hmac.HMAC.copy()``: copying two
bare hash states is cheaper than copying an ``hmac`` object (``benchmarks/signing.py`` measures
the signer), and ``tests/test_signer.py`` checks the result against ``hmac`` for many keys.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

from scanner.client.credentials import Credentials
from scanner.eas.params import API_VERSION
from scanner.eas.signing import ALGORITHM, EMPTY_BODY_SHA256

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["RequestSigner"]

_DATE: Final = "x-acs-date"
_NONCE: Final = "x-acs-signature-nonce"
_BLOCK_SIZE: Final = 64  # SHA-256


def _hmac_states(key: bytes) -> tuple[_Hash, _Hash]:
    """SHA-256 states after absorbing ``key ^ ipad`` and ``key ^ opad`` (RFC 2104)."""
    if len(key) > _BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK_SIZE, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


class RequestSigner:
    """Signs GET requests with no body for one host, action and set of credentials."""

    __slots__ = (
        "_after_nonce",
        "_auth_prefix",
        "_before_date",
        "_between",
        "_inner",
        "_outer",
        "_static",
        "credentials",
    )

    def __init__(self, *, host: str, action: str, user_agent: str, credentials: Credentials) -> None:
        self.credentials = credentials
        # In the order the SDK sends them; only the sort order matters for the signature.
        static = {
            "host": host,
            "x-acs-version": API_VERSION,
            "x-acs-action": action,
            "user-agent": user_agent,
            "accept": "application/json",
            "x-acs-content-sha256": EMPTY_BODY_SHA256,
        }
        if credentials.security_token is not None:
            static["x-acs-accesskey-id"] = credentials.access_key_id
            static["x-acs-security-token"] = credentials.security_token
        self._static = static

        names = sorted([*static, _DATE, _NONCE])
        signed_headers = ";".join(names)

        def lines(selected: list[str]) -> str:
            return "".join(f"{name}:{static[name].strip()}\n" for name in selected)

        date_at, nonce_at = names.index(_DATE), names.index(_NONCE)
        self._before_date = lines(names[:date_at])
        self._between = lines(names[date_at + 1 : nonce_at])
        self._after_nonce = f"{lines(names[nonce_at + 1 :])}\n{signed_headers}\n{EMPTY_BODY_SHA256}"
        self._auth_prefix = (
            f"{ALGORITHM} Credential={credentials.access_key_id},SignedHeaders={signed_headers},Signature="
        )
        self._inner, self._outer = _hmac_states(credentials.access_key_secret.encode())
        self._inner.update(f"{ALGORITHM}\n".encode())

    def sign(self, path: str, query: str, date: str, nonce: str) -> dict[str, str]:
        """The request's headers, ``Authorization`` included.

        ``path`` and ``query`` are in canonical form (``quote(v, safe='~')``), which is also
        exactly what goes on the wire.
        """
        canonical = (
            f"GET\n{path}\n{query}\n{self._before_date}x-acs-date:{date}\n"
            f"{self._between}x-acs-signature-nonce:{nonce}\n{self._after_nonce}"
        )
        inner = self._inner.copy()
        inner.update(hashlib.sha256(canonical.encode()).hexdigest().encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        headers = self._static.copy()
        headers[_DATE] = date
        headers[_NONCE] = nonce
        headers["Authorization"] = self._auth_prefix + outer.hexdigest()
        return headers

    def __repr__(self) -> str:
        return f"RequestSigner(host={self._static['host']!r}, action={self._static['x-acs-action']!r})"
