"""ACS3-HMAC-SHA256 request signing (``sign``) and verification (``verify``). Pure: no I/O, no clock.

``verify`` checks what the protocol defines: the signature, the headers that must be signed and
the date's format. What a server adds on top (a clock-skew window, a nonce-replay cache, the
legacy HMAC-SHA1 signature) is server policy and lives with the simulator
(``scanner.simulator.acceptance``).

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

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final
from urllib.parse import quote, unquote, unquote_plus

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "EMPTY_BODY_SHA256",
    "SignatureError",
    "VerifiedRequest",
    "canonical_query",
    "canonical_request",
    "canonical_uri_from_raw",
    "format_date",
    "parse_authorization",
    "percent_encode",
    "sign",
    "verify",
]

ALGORITHM: Final = "ACS3-HMAC-SHA256"
DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_BODY_SHA256: Final = hashlib.sha256(b"").hexdigest()

#: Headers a request must sign for us to accept it.
REQUIRED_SIGNED_HEADERS: Final = frozenset(
    {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
     "x-acs-content-sha256"}
)  # fmt: skip

_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]*")


def percent_encode(value: str) -> str:
    """A path segment or query value encoded as the SDK does: ``quote(value, safe="~")``."""
    # Most values (page numbers, region ids, plain names) need no escaping; skip quote() for them.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The canonical query string; also what our client sends on the wire, byte for byte."""
    return "&".join(f"{key}={percent_encode(params[key])}" for key in sorted(params))


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
    # The one-shot hmac.digest runs in C throughout; hmac.new builds a Python HMAC object per call.
    return hmac.digest(secret.encode(), string_to_sign.encode(), "sha256").hex()


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
    """What a valid signature vouches for: who signed, with which token, for what, when, and once."""

    access_key_id: str
    security_token: str | None
    action: str | None
    date: datetime
    nonce: str


@dataclass(frozen=True, slots=True)
class Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Parse ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``."""
    # Only the signature differs between one client's requests: parse the rest once. The result is
    # the generic parse's (the last field of a name wins, and ",Signature=" here is the last one).
    head, sep, signature = value.strip().rpartition(",Signature=")
    if sep and "," not in signature:
        prefix = _parse_authorization_head(head)
        if prefix is not None:
            return Authorization(prefix[0], prefix[1], prefix[2], signature)
    return _parse_authorization(value)


@lru_cache(maxsize=256)
def _parse_authorization_head(head: str) -> tuple[str, str, tuple[str, ...]] | None:
    try:
        auth = _parse_authorization(head + ",Signature=")
    except SignatureError:
        return None
    return auth.algorithm, auth.access_key_id, auth.signed_headers


def _parse_authorization(value: str) -> Authorization:
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


# Raw forms that decode and re-encode to themselves: nothing escaped, nothing that needs escaping.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~=&]*")


# Cached because a scan sends the same few paths and queries (one per service and page) over and
# over; both functions are pure, so a cached answer is the computed one. Small caches: a request
# line is at most 8 KiB, so whatever clients send these stay under ~40 MiB (a few KiB in practice).
@lru_cache(maxsize=1024)
def canonical_uri_from_raw(raw_path: str) -> str:
    """The CanonicalURI of a path as received (percent-encoded however the client chose)."""
    if _PLAIN_PATH.fullmatch(raw_path):
        return raw_path or "/"
    return "/".join(percent_encode(unquote(segment)) for segment in raw_path.split("/")) or "/"


@lru_cache(maxsize=1024)
def _canonical_query_from_raw(raw_query: str) -> str:
    plain = _PLAIN_QUERY.fullmatch(raw_query) is not None
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if plain:
            params[key] = value
        else:
            params[unquote_plus(key)] = unquote_plus(value)
    if plain:
        return "&".join(f"{key}={params[key]}" for key in sorted(params))
    return canonical_query(params)


@lru_cache(maxsize=64)
def _parse_date(text: str) -> datetime:
    return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=UTC)


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    secret_for: Callable[[str], str | None],
) -> VerifiedRequest:
    """Check an ACS3-HMAC-SHA256 signed request as a server receives it. Raise ``SignatureError``.

    ``raw_path`` and ``raw_query`` are as received (still percent-encoded); ``headers`` are every
    (name, value) pair received; ``secret_for`` maps an AccessKey id to its secret (None: unknown).
    Only the signed headers are checked; clients add unsigned ones (Accept-Encoding, ...). Whether
    the date is recent and the nonce unused is for the server to decide (see the module doc).
    """
    # First value per lower-case name; the few names sent more than once also go in ``repeated``.
    received: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for name, value in headers:
        name = name.lower()
        if name in received:
            repeated.setdefault(name, [received[name]]).append(value)
        else:
            received[name] = value

    authorization = received.get("authorization")
    if not authorization:
        raise SignatureError("MissingAuthorization", "the request is not signed (no Authorization)")
    auth = parse_authorization(authorization)
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
        first = received.get(name)
        if first is None:
            raise SignatureError("IncompleteSignature", f"signed header {name!r} is not present")
        values = repeated.get(name) if repeated else None
        signed[name] = first if values is None else ",".join(sorted(v.strip() for v in values))

    body_sha256 = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    if signed["x-acs-content-sha256"].strip() != body_sha256:
        raise SignatureError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body")

    canonical, _ = canonical_request(
        method.upper(),
        canonical_uri_from_raw(raw_path),
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
    if token is not None and "x-acs-security-token" not in auth.signed_headers:
        raise SignatureError("IncompleteSignature", "x-acs-security-token must be signed")
    try:
        date = _parse_date(signed["x-acs-date"].strip())
    except ValueError:
        raise SignatureError("InvalidTimeStamp.Format", "x-acs-date is not yyyy-MM-ddTHH:mm:ssZ") from None
    return VerifiedRequest(
        access_key_id=auth.access_key_id,
        security_token=token,
        action=signed["x-acs-action"].strip(),
        date=date,
        nonce=signed["x-acs-signature-nonce"].strip(),
    )
