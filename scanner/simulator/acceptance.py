"""What the simulator accepts beyond a valid ACS3 signature: server policy, not protocol.

``scanner.eas.signing.verify`` checks what the protocol defines (and what our client must get
right). A server adds its own rules, and so does the simulator, here:

- a clock-skew window: a request dated more than ``MAX_CLOCK_SKEW`` from the server's clock is
  refused with ``InvalidTimeStamp.Expired`` (what a client with a wrong clock sees);
- a nonce-replay cache (``NonceCache``): a nonce used inside the window is refused with
  ``SignatureNonceUsed``;
- the legacy ROA HMAC-SHA1 signature the official SDK sends with ``signature_algorithm="v2"``.

These are checked only once the signature holds, so a forger learns nothing from which failed.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import unquote_plus

from scanner.eas.signing import SignatureError, VerifiedRequest, canonical_uri_from_raw, verify

__all__ = [
    "DEFAULT_NONCE_CAPACITY",
    "LEGACY_PREFIX",
    "MAX_CLOCK_SKEW",
    "NonceCache",
    "accept",
    "verify_legacy",
]

#: How far a request's date may be from the server's clock, either way.
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)

#: The most nonces a ``NonceCache`` holds by default (about 200 bytes each).
DEFAULT_NONCE_CAPACITY: Final = 250_000


class NonceCache:
    """Remembers nonces for as long as their requests could still be accepted; bounded in memory.

    A nonce is kept until its request's ``x-acs-date`` leaves the skew window, after which the
    date check rejects a replay on its own; so memory follows the request rate over the window,
    not the uptime. ``capacity`` bounds it anyway: when full, the nonces with the oldest dates are
    forgotten, and from then on every request dated at or before a forgotten nonce's date is
    refused, since it could be a replay of it (fail closed: a replay is never accepted, at worst a
    request that took longer than ``capacity`` requests' worth of time to arrive is refused).

    ``window`` must be the ``max_skew`` that ``verify`` checks dates against.
    """

    __slots__ = ("_by_date", "_capacity", "_floor", "_seen", "_window")

    def __init__(self, window: timedelta = MAX_CLOCK_SKEW, capacity: int = DEFAULT_NONCE_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._window = window.total_seconds()
        self._capacity = capacity
        self._seen: set[str] = set()
        self._by_date: list[tuple[float, str]] = []  # a heap: the oldest-dated nonce first
        # Requests dated at or before this (epoch seconds) are refused: their nonces may be forgotten.
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, nonce: str, now: datetime, date: datetime | None = None) -> bool:
        """Record ``nonce`` of a request signed at ``date`` (default: ``now``) and received ``now``.

        False if the nonce was already used inside the window, or if the request is dated at or
        before the newest date forgotten so far (its nonce might be one of those forgotten).
        """
        stamp = (now if date is None else date).timestamp()
        horizon = now.timestamp() - self._window
        heap, seen = self._by_date, self._seen
        # Popping in date order keeps the floor monotonic, and every date pushed is above it.
        while heap and heap[0][0] < horizon:
            self._floor, old = heapq.heappop(heap)
            seen.discard(old)
        if stamp <= self._floor or nonce in seen:
            return False
        seen.add(nonce)
        heapq.heappush(heap, (stamp, nonce))
        if len(heap) > self._capacity:
            self._floor, old = heapq.heappop(heap)
            seen.discard(old)
            # The new nonce itself may have been the oldest: its request is then refused too.
            return old != nonce
        return True

    def __repr__(self) -> str:
        return f"NonceCache({len(self._seen)}/{self._capacity} nonces, window {self._window:g} s)"


def accept(
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
    """Verify a request as the simulator does: its signature (ACS3, or legacy), then its freshness.

    The arguments are ``signing.verify``'s, plus the server's clock ``now``, the nonces seen so far
    (None: no replay check) and the skew window. Raises ``SignatureError``.
    """
    headers = tuple(headers)
    authorization = next((value for name, value in headers if name.lower() == "authorization"), "")
    if authorization.startswith(LEGACY_PREFIX):
        received: dict[str, str] = {}
        for name, value in headers:
            received.setdefault(name.lower(), value)
        verified = verify_legacy(method, raw_path, raw_query, received, authorization, secret_for)
    else:
        verified = verify(
            method=method, raw_path=raw_path, raw_query=raw_query, headers=headers, body=body,
            secret_for=secret_for,
        )  # fmt: skip
    if abs(now - verified.date) > max_skew:
        raise SignatureError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    if nonces is not None and not nonces.check_and_add(verified.nonce, now, verified.date):
        raise SignatureError("SignatureNonceUsed", "Specified signature nonce was used already.")
    return verified


# --- legacy ROA HMAC-SHA1 (what the SDK sends with signature_algorithm="v2") ---------------------

LEGACY_PREFIX: Final = "acs "


def verify_legacy(
    method: str,
    raw_path: str,
    raw_query: str,
    received: Mapping[str, str],
    authorization: str,
    secret_for: Callable[[str], str | None],
) -> VerifiedRequest:
    """Check the ROA HMAC-SHA1 signature (``Authorization: acs ID:SIG``). Raise ``SignatureError``."""
    access_key_id, sep, signature = authorization[len(LEGACY_PREFIX) :].strip().rpartition(":")
    if not sep or not access_key_id:
        raise SignatureError("IncompleteSignature", "malformed legacy Authorization header")
    secret = secret_for(access_key_id)
    if secret is None:
        raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", status=404)

    def first(name: str) -> str:
        return received.get(name, "")

    acs_headers = "".join(
        f"{name}:{received[name]}\n" for name in sorted(received) if name.startswith("x-acs-")
    )
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[unquote_plus(key)] = unquote_plus(value)
    resource = canonical_uri_from_raw(raw_path)
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
    return VerifiedRequest(
        access_key_id=access_key_id,
        security_token=received.get("x-acs-security-token"),
        action=first("x-acs-action") or None,
        date=date,
        nonce=first("x-acs-signature-nonce"),
    )
