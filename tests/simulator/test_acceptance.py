"""What the simulator accepts beyond a valid signature: the skew window, nonce replay, legacy v2.

Run on the official SDK's captured requests (tests/data/sdk-captured-requests.jsonl), the same
vectors tests/test_signing.py checks the protocol's part on.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from scanner.eas import signing
from scanner.eas.signing import SignatureError, sign
from scanner.simulator.acceptance import NonceCache, accept
from scanner.testing import FakeClock
from tests.test_signing import ACS3_VECTORS, CAPTURE_TIME, SECRETS, TAMPERINGS, VECTORS_ALL, Captured


def _verify(vector: Captured, **changes: object) -> signing.VerifiedRequest:
    kwargs: dict[str, object] = {
        "method": vector.method,
        "raw_path": vector.raw_path,
        "raw_query": vector.query_string,
        "headers": vector.headers,
        "body": vector.body,
        "secret_for": SECRETS.get,
        "now": CAPTURE_TIME,
    }
    kwargs.update(changes)
    return accept(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", VECTORS_ALL, ids=lambda v: f"capture{v.index}")
def test_every_captured_sdk_request_is_accepted(vector: Captured) -> None:
    verified = _verify(vector)
    assert verified.access_key_id == "testid"
    headers = {k.lower(): v for k, v in vector.headers}
    assert verified.action == headers["x-acs-action"]
    assert verified.security_token == headers.get("x-acs-security-token")
    assert verified.nonce == headers["x-acs-signature-nonce"]


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
@pytest.mark.parametrize("vector", VECTORS_ALL, ids=lambda v: f"capture{v.index}")
def test_a_tampered_copy_is_refused(vector: Captured, what: str) -> None:
    with pytest.raises(SignatureError) as caught:
        _verify(vector, **TAMPERINGS[what](vector))
    assert caught.value.code == "SignatureDoesNotMatch"


def test_the_legacy_signature_needs_a_known_key() -> None:
    [legacy] = [v for v in VECTORS_ALL if not v.is_acs3]
    with pytest.raises(SignatureError) as caught:
        _verify(legacy, secret_for={}.get)
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId.NotFound", 404)


@pytest.mark.parametrize(
    ("skew", "ok"),
    [(timedelta(0), True), (timedelta(minutes=14, seconds=59), True),
     (-timedelta(minutes=15), True), (timedelta(minutes=15, seconds=1), False),
     (-timedelta(minutes=16), False)],
)  # fmt: skip
def test_fifteen_minute_window(skew: timedelta, ok: bool) -> None:
    for vector in (ACS3_VECTORS[2], VECTORS_ALL[8]):
        if ok:
            _verify(vector, now=CAPTURE_TIME + skew)
        else:
            with pytest.raises(SignatureError) as caught:
                _verify(vector, now=CAPTURE_TIME + skew)
            assert caught.value.code == "InvalidTimeStamp.Expired"


def test_a_replayed_nonce_is_rejected() -> None:
    nonces = NonceCache()
    vector = ACS3_VECTORS[2]
    _verify(vector, nonces=nonces)
    with pytest.raises(SignatureError) as caught:
        _verify(vector, nonces=nonces)
    assert caught.value.code == "SignatureNonceUsed"
    # A different request with its own nonce still passes.
    _verify(ACS3_VECTORS[3], nonces=nonces)


def test_nonce_cache_forgets_nonces_older_than_the_window() -> None:
    nonces = NonceCache(window=timedelta(minutes=15))
    assert nonces.check_and_add("a", CAPTURE_TIME)
    assert not nonces.check_and_add("a", CAPTURE_TIME + timedelta(minutes=10))
    later = CAPTURE_TIME + timedelta(hours=1)
    assert nonces.check_and_add("b", later)
    assert len(nonces) == 1  # "a" was purged: its request could no longer pass the date check


def _signed_request(clock: FakeClock, nonce: str) -> dict[str, object]:
    """A request signed now on ``clock``, as ``accept`` keyword arguments."""
    headers = {
        "host": "127.0.0.1:8001",
        "x-acs-action": "DescribeRegions",
        "x-acs-version": "2021-07-01",
        "x-acs-date": signing.format_date(clock.wall()),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": signing.EMPTY_BODY_SHA256,
    }
    authorization = sign(
        method="GET", canonical_uri="/api/v2/regions", params={}, headers=headers,
        access_key_id="testid", access_key_secret="testsecret",
    )  # fmt: skip
    return {
        "method": "GET",
        "raw_path": "/api/v2/regions",
        "raw_query": "",
        "headers": [*headers.items(), ("Authorization", authorization)],
        "body": b"",
        "secret_for": SECRETS.get,
    }


def test_a_replay_is_rejected_for_the_whole_window_and_its_nonce_then_forgotten() -> None:
    clock = FakeClock(wall_start=CAPTURE_TIME)
    nonces = NonceCache()
    request = _signed_request(clock, "n-1")
    accept(**request, now=clock.wall(), nonces=nonces)  # type: ignore[arg-type]
    for seconds in (1, 600, 900):  # up to the last second the date check lets it through
        clock.now = seconds
        with pytest.raises(SignatureError) as caught:
            accept(**request, now=clock.wall(), nonces=nonces)  # type: ignore[arg-type]
        assert caught.value.code == "SignatureNonceUsed"
    clock.now = 901
    accept(**_signed_request(clock, "n-2"), now=clock.wall(), nonces=nonces)  # type: ignore[arg-type]
    assert len(nonces) == 1  # "n-1" is gone, and its replay is refused by its date alone:
    with pytest.raises(SignatureError) as caught:
        accept(**request, now=clock.wall(), nonces=nonces)  # type: ignore[arg-type]
    assert caught.value.code == "InvalidTimeStamp.Expired"


def test_a_nonce_is_kept_by_its_request_date_not_its_arrival() -> None:
    # Signed ten minutes in the future (a client clock ahead): acceptable until date + 15 min.
    nonces = NonceCache(window=timedelta(minutes=15))
    date = CAPTURE_TIME + timedelta(minutes=10)
    assert nonces.check_and_add("ahead", CAPTURE_TIME, date)
    assert not nonces.check_and_add("ahead", CAPTURE_TIME + timedelta(minutes=24), date)
    assert nonces.check_and_add("other", CAPTURE_TIME + timedelta(minutes=25, seconds=1))
    assert len(nonces) == 1


def test_the_cache_stays_bounded_by_the_rate_over_the_window_however_long_it_runs() -> None:
    clock = FakeClock(wall_start=CAPTURE_TIME)
    nonces = NonceCache(window=timedelta(minutes=15))
    per_second, window_seconds = 5, 15 * 60
    peak = 0
    for n in range(per_second * 3 * 3600):  # three hours at 5 requests/s: 54,000 nonces
        clock.now = n / per_second
        assert nonces.check_and_add(f"n-{n}", clock.wall())
        peak = max(peak, len(nonces))
    # Everything still inside the window, nothing older: the bound is the rate times the window.
    assert per_second * window_seconds <= peak <= per_second * (window_seconds + 1)
    assert len(nonces) <= peak


def test_the_hard_cap_forgets_the_oldest_and_refuses_what_could_replay_them() -> None:
    nonces = NonceCache(window=timedelta(minutes=15), capacity=3)
    at = [CAPTURE_TIME + timedelta(seconds=s) for s in range(6)]
    for i in range(5):
        assert nonces.check_and_add(f"n-{i}", at[5], at[i])
    assert len(nonces) == 3
    # n-0 and n-1 were forgotten, but their replays are refused: dated at or before the floor.
    assert not nonces.check_and_add("n-0", at[5], at[0])
    assert not nonces.check_and_add("n-1", at[5], at[1])
    assert not nonces.check_and_add("n-4", at[5], at[4])  # remembered, as usual
    # A fresh nonce dated at the floor is refused too; one dated after it is accepted.
    assert not nonces.check_and_add("fresh", at[5], at[1])
    assert nonces.check_and_add("fresh", at[5], at[5])
    assert len(nonces) == 3


def test_a_full_cache_refuses_a_request_older_than_everything_it_holds() -> None:
    nonces = NonceCache(capacity=2)
    assert nonces.check_and_add("b", CAPTURE_TIME, CAPTURE_TIME + timedelta(seconds=1))
    assert nonces.check_and_add("c", CAPTURE_TIME, CAPTURE_TIME + timedelta(seconds=2))
    assert not nonces.check_and_add("a", CAPTURE_TIME, CAPTURE_TIME)
    assert len(nonces) == 2
    assert not nonces.check_and_add("a", CAPTURE_TIME, CAPTURE_TIME)


def test_nonce_cache_rejects_a_capacity_below_one() -> None:
    with pytest.raises(ValueError, match="capacity"):
        NonceCache(capacity=0)
