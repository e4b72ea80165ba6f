"""ACS3-HMAC-SHA256 request signing (``sign``) and verification (``verify``). Pure: no I/O, no clock.

The recipe (see ``shared/research/eas-api.md``)::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n HexSHA256(body)
    StringToSign     = "ACS3-HMAC-SHA256" \\n HexSHA256(CanonicalRequest)
    Signature        = HexHMAC-SHA256(AccessKeySecret, StringToSign)

- CanonicalURI is the path with each segment encoded as ``quote(segment, safe="~")``.
- CanonicalQuery is ``key=quote(value, safe="~")`` sorted by key (keys raw), joined with ``&``.
- CanonicalHeaders is every signed header ``name:value.strip()\\n``, names lower-case and sorted.

Clients re-encode URLs differently on the wire (yarl turns ``%2A`` into ``*``; requests sends a
space as ``+``), so ``verify`` decodes the raw path and query and re-encodes them before hashing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Final
from urllib.parse import quote, unquote, unquote_plus

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "EMPTY_BODY_SHA256",
    "MAX_CLOCK_SKEW",
    "NonceCache",
    "SignatureError",
    "VerifiedRequest",
    "canonical_query",
    "canonical_request",
    "format_date",
    "parse_authorization",
    "sign",
    "verify",
]

ALGORITHM: Final = "ACS3-HMAC-SHA256"
DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_BODY_SHA256: Final = hashlib.sha256(b"").hexdigest()
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)

#: Headers a request must sign for us to accept it.
REQUIRED_SIGNED_HEADERS: Final = frozenset(
    {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
     "x-acs-content-sha256"}
)  # fmt: skip

_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]*")


def _encode(value: str) -> str:
    # Most values (page numbers, region ids, plain names) need no escaping; skip quote() for them.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The canonical query string; also what our client sends on the wire, byte for byte."""
    return "&".join(f"{key}={_encode(params[key])}" for key in sorted(params))


def canonical_request(
    method: str,
    canonical_uri: str,
    query: str,
    headers: Mapping[str, str],
    body_sha256: str,
) -> tuple[str, str]:
    """Return ``(CanonicalRequest, SignedHeaders)``. ``headers`` maps lower-case names to values."""
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    signed_headers = ";".join(names)
    return (
        f"{method}\n{canonical_uri or '/'}\n{query}\n{canonical_headers}\n{signed_headers}\n{body_sha256}",
        signed_headers,
    )


def _signature(secret: str, canonical: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    *,
    method: str,
    canonical_uri: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    body_sha256: str = EMPTY_BODY_SHA256,
) -> str:
    """Sign a request and return its ``Authorization`` header value.

    ``canonical_uri`` is the already-encoded path (see ``scanner.eas.params``); ``params`` are the
    query parameters, decoded; ``headers`` are every header to sign, names in lower case (they must
    include ``x-acs-content-sha256``, ``x-acs-date`` and ``x-acs-signature-nonce``).
    """
    canonical, signed_headers = canonical_request(
        method, canonical_uri, canonical_query(params), headers, body_sha256
    )
    signature = _signature(access_key_secret, canonical)
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"


@lru_cache(maxsize=4)
def _format_epoch_second(epoch_second: int) -> str:
    return time.strftime(DATE_FORMAT, time.gmtime(epoch_second))


def format_date(moment: datetime) -> str:
    """``x-acs-date`` for a moment: UTC, whole seconds. Cached, since it changes once a second."""
    return _format_epoch_second(int(moment.timestamp()))


# --- verification ----------------------------------------------------------------------------


class SignatureError(Exception):
    """A request failed authentication. ``code`` and ``status`` are what the API would answer."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    access_key_id: str
    security_token: str | None
    action: str | None
    date: datetime


@dataclass(frozen=True, slots=True)
class Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Parse ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    try:
        return Authorization(
            algorithm=algorithm,
            access_key_id=fields["Credential"],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"],
        )
    except KeyError as missing:
        raise SignatureError(
            "IncompleteSignature", f"the Authorization header has no {missing.args[0]}"
        ) from None


def _canonical_uri_from_raw(raw_path: str) -> str:
    return "/".join(_encode(unquote(segment)) for segment in raw_path.split("/")) or "/"


def _canonical_query_from_raw(raw_query: str) -> str:
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params[unquote_plus(key)] = unquote_plus(value)
    return canonical_query(params)


@lru_cache(maxsize=64)
def _parse_date(text: str) -> datetime:
    return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)


class NonceCache:
    """Remembers nonces for as long as their requests could still be accepted (the skew window)."""

    def __init__(self, window: timedelta = MAX_CLOCK_SKEW) -> None:
        self._window = window
        self._seen: dict[str, datetime] = {}
        self._next_purge: datetime | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, nonce: str, now: datetime) -> bool:
        """Record ``nonce``; False if it was already seen inside the window."""
        if self._next_purge is None or now >= self._next_purge:
            horizon = now - 2 * self._window
            self._seen = {n: t for n, t in self._seen.items() if t > horizon}
            self._next_purge = now + self._window / 4
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime,
    nonces: NonceCache | None = None,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> VerifiedRequest:
    """Check an ACS3-HMAC-SHA256 signed request as a server receives it. Raise ``SignatureError``.

    ``raw_path`` and ``raw_query`` are as received (still percent-encoded); ``headers`` are every
    (name, value) pair received; ``secret_for`` maps an AccessKey id to its secret (None: unknown).
    Only the signed headers are checked; clients add unsigned ones (Accept-Encoding, ...).
    """
    received: dict[str, list[str]] = {}
    for name, value in headers:
        received.setdefault(name.lower(), []).append(value)

    authorization = received.get("authorization")
    if not authorization:
        raise SignatureError("MissingAuthorization", "the request is not signed (no Authorization)")
    if authorization[0].startswith(LEGACY_PREFIX):
        return _verify_legacy(
            method, raw_path, raw_query, received, authorization[0], secret_for, now, nonces, max_skew
        )
    auth = parse_authorization(authorization[0])
    if auth.algorithm != ALGORITHM:
        raise SignatureError(
            "InvalidParameter.SignatureMethod", f"unsupported signature algorithm {auth.algorithm!r}"
        )
    missing = REQUIRED_SIGNED_HEADERS.difference(auth.signed_headers)
    if missing:
        raise SignatureError(
            "IncompleteSignature", f"these headers must be signed: {', '.join(sorted(missing))}"
        )

    secret = secret_for(auth.access_key_id)
    if secret is None:
        raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", status=404)

    signed: dict[str, str] = {}
    for name in auth.signed_headers:
        values = received.get(name)
        if values is None:
            raise SignatureError("IncompleteSignature", f"signed header {name!r} is not present")
        signed[name] = values[0] if len(values) == 1 else ",".join(sorted(v.strip() for v in values))

    body_sha256 = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    if signed["x-acs-content-sha256"].strip() != body_sha256:
        raise SignatureError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body")

    canonical, _ = canonical_request(
        method.upper(),
        _canonical_uri_from_raw(raw_path),
        _canonical_query_from_raw(raw_query),
        signed,
        body_sha256,
    )
    expected = _signature(secret, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError(
            "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
        )

    token = received.get("x-acs-security-token")
    if token and "x-acs-security-token" not in auth.signed_headers:
        raise SignatureError("IncompleteSignature", "x-acs-security-token must be signed")
    try:
        date = _parse_date(signed["x-acs-date"].strip())
    except ValueError:
        raise SignatureError("InvalidTimeStamp.Format", "x-acs-date is not yyyy-MM-ddTHH:mm:ssZ") from None
    return _accept(
        auth.access_key_id,
        token[0] if token else None,
        signed["x-acs-action"].strip(),
        date,
        signed["x-acs-signature-nonce"].strip(),
        now,
        nonces,
        max_skew,
    )


def _accept(
    access_key_id: str,
    security_token: str | None,
    action: str | None,
    date: datetime,
    nonce: str,
    now: datetime,
    nonces: NonceCache | None,
    max_skew: timedelta,
) -> VerifiedRequest:
    # Checked only once the signature holds, so a forger learns nothing from which check failed.
    if abs(now - date) > max_skew:
        raise SignatureError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    if nonces is not None and not nonces.check_and_add(nonce, now):
        raise SignatureError("SignatureNonceUsed", "Specified signature nonce was used already.")
    return VerifiedRequest(
        access_key_id=access_key_id, security_token=security_token, action=action, date=date
    )


# --- legacy ROA HMAC-SHA1 (what the SDK sends with signature_algorithm="v2") ---------------------

LEGACY_PREFIX: Final = "acs "


def _verify_legacy(
    method: str,
    raw_path: str,
    raw_query: str,
    received: Mapping[str, list[str]],
    authorization: str,
    secret_for: Callable[[str], str | None],
    now: datetime,
    nonces: NonceCache | None,
    max_skew: timedelta,
) -> VerifiedRequest:
    access_key_id, sep, signature = authorization[len(LEGACY_PREFIX) :].strip().rpartition(":")
    if not sep or not access_key_id:
        raise SignatureError("IncompleteSignature", "malformed legacy Authorization header")
    secret = secret_for(access_key_id)
    if secret is None:
        raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", status=404)

    def first(name: str) -> str:
        values = received.get(name)
        return values[0] if values else ""

    acs_headers = "".join(
        f"{name}:{received[name][0]}\n" for name in sorted(received) if name.startswith("x-acs-")
    )
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[unquote_plus(key)] = unquote_plus(value)
    resource = _canonical_uri_from_raw(raw_path)
    if params:
        resource += "?" + "&".join(f"{key}={params[key]}" if params[key] else key for key in sorted(params))
    string_to_sign = (
        f"{method.upper()}\n{first('accept')}\n{first('content-md5')}\n"
        f"{first('content-type')}\n{first('date')}\n{acs_headers}{resource}"
    )
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), signature):
        raise SignatureError(
            "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
        )
    try:
        date = parsedate_to_datetime(first("date"))
    except (TypeError, ValueError):
        raise SignatureError("InvalidTimeStamp.Format", "the Date header is not RFC 1123") from None
    token = received.get("x-acs-security-token")
    return _accept(
        access_key_id,
        token[0] if token else None,
        first("x-acs-action") or None,
        date,
        first("x-acs-signature-nonce"),
        now,
        nonces,
        max_skew,
    )
