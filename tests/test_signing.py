"""ACS3-HMAC-SHA256: the SDK's captured requests verify, re-sign byte-identically, and tampering fails.

The server's own rules on top (the clock-skew window, nonce replay, the legacy signature) are
tested with the simulator, in tests/simulator/test_acceptance.py, on the same captured requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import pytest

from scanner.eas import signing
from scanner.eas.signing import SignatureError, percent_encode, sign, verify

VECTORS = Path(__file__).parent / "data" / "sdk-captured-requests.jsonl"
SECRETS = {"testid": "testsecret"}
CAPTURE_TIME = datetime(2026, 11, 28, 13, 46, 47, tzinfo=UTC)


@dataclass
class Captured:
    index: int
    method: str
    raw_path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def authorization(self) -> str:
        return next(v for k, v in self.headers if k.lower() == "authorization")

    @property
    def is_acs3(self) -> bool:
        return self.authorization.startswith(signing.ALGORITHM)


def load_vectors() -> list[Captured]:
    vectors = []
    for index, line in enumerate(VECTORS.read_text().splitlines()):
        raw = json.loads(line)
        vectors.append(
            Captured(
                index,
                raw["method"],
                raw["raw_path"],
                raw["query_string"],
                [(k, v) for k, v in raw["headers"]],
                raw["body"].encode(),
            )
        )
    return vectors


VECTORS_ALL = load_vectors()
ACS3_VECTORS = [v for v in VECTORS_ALL if v.is_acs3]


def test_there_are_fifteen_vectors_fourteen_of_them_acs3() -> None:
    assert len(VECTORS_ALL) == 15
    assert len(ACS3_VECTORS) == 14


def _verify(vector: Captured, **changes: object) -> signing.VerifiedRequest:
    kwargs: dict[str, object] = {
        "method": vector.method,
        "raw_path": vector.raw_path,
        "raw_query": vector.query_string,
        "headers": vector.headers,
        "body": vector.body,
        "secret_for": SECRETS.get,
    }
    kwargs.update(changes)
    return verify(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", ACS3_VECTORS, ids=lambda v: f"capture{v.index}")
def test_every_captured_sdk_request_verifies(vector: Captured) -> None:
    verified = _verify(vector)
    assert verified.access_key_id == "testid"
    headers = {k.lower(): v for k, v in vector.headers}
    assert verified.action == headers["x-acs-action"]
    assert verified.security_token == headers.get("x-acs-security-token")
    assert verified.nonce == headers["x-acs-signature-nonce"]
    assert verified.date == CAPTURE_TIME


def test_verify_judges_the_signature_not_the_freshness() -> None:
    # Captured in November 2026 and verified whenever the tests run: the window is the server's.
    assert _verify(ACS3_VECTORS[2]).date == CAPTURE_TIME


def test_a_legacy_signature_is_not_acs3() -> None:
    [legacy] = [v for v in VECTORS_ALL if not v.is_acs3]
    with pytest.raises(SignatureError) as caught:
        _verify(legacy)
    assert caught.value.code == "IncompleteSignature"  # no Credential=, SignedHeaders=, Signature=


@pytest.mark.parametrize("vector", ACS3_VECTORS, ids=lambda v: f"capture{v.index}")
def test_resigning_the_logical_form_is_byte_identical(vector: Captured) -> None:
    auth = signing.parse_authorization(vector.authorization)
    headers = {k.lower(): v for k, v in vector.headers if k.lower() in auth.signed_headers}
    # The logical form: decoded path segments and query values, as a caller would pass them.
    segments = [unquote(s) for s in vector.raw_path.split("/")]
    canonical_uri = "/".join(percent_encode(s) for s in segments)
    params = {}
    for pair in filter(None, vector.query_string.split("&")):
        key, _, value = pair.partition("=")
        params[unquote_plus(key)] = unquote_plus(value)

    authorization = sign(
        method=vector.method,
        canonical_uri=canonical_uri,
        params=params,
        headers=headers,
        access_key_id="testid",
        access_key_secret="testsecret",
    )
    assert authorization == vector.authorization


def _replace_header(vector: Captured, name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name else v) for k, v in vector.headers]


TAMPERINGS = {
    "path": lambda v: {"raw_path": v.raw_path.replace("/api/v2/services", "/api/v2/servicez")},
    "query value": lambda v: {
        "raw_query": (v.query_string + "&" if v.query_string else "") + "PageNumber=9"
        if "PageNumber" not in v.query_string
        else v.query_string.replace("PageNumber=", "PageNumber=9")
    },
    "signed header": lambda v: {
        "headers": _replace_header(v, "x-acs-action", "DeleteService"),
    },
    "date": lambda v: {
        "headers": _replace_header(v, "x-acs-date", "2026-11-28T13:46:48Z")
        if v.is_acs3
        else _replace_header(v, "date", "Sat, 28 Nov 2026 13:46:48 GMT")
    },
    "secret": lambda v: {"secret_for": {"testid": "wrong"}.get},
}


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
@pytest.mark.parametrize("vector", ACS3_VECTORS, ids=lambda v: f"capture{v.index}")
def test_a_tampered_copy_fails(vector: Captured, what: str) -> None:
    with pytest.raises(SignatureError) as caught:
        _verify(vector, **TAMPERINGS[what](vector))
    assert caught.value.code == "SignatureDoesNotMatch"


def test_unsigned_headers_are_ignored() -> None:
    vector = ACS3_VECTORS[2]
    extra = [*vector.headers, ("Content-Type", "application/octet-stream"), ("X-Foo", "bar")]
    assert _verify(vector, headers=extra).access_key_id == "testid"


def test_unknown_access_key() -> None:
    with pytest.raises(SignatureError) as caught:
        _verify(ACS3_VECTORS[0], secret_for={}.get)
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert caught.value.status == 404


def test_missing_authorization() -> None:
    vector = ACS3_VECTORS[0]
    headers = [(k, v) for k, v in vector.headers if k.lower() != "authorization"]
    with pytest.raises(SignatureError) as caught:
        _verify(vector, headers=headers)
    assert caught.value.code == "MissingAuthorization"


def test_required_headers_must_be_signed() -> None:
    vector = ACS3_VECTORS[0]
    auth = vector.authorization.replace("x-acs-signature-nonce;", "")
    with pytest.raises(SignatureError) as caught:
        _verify(vector, headers=_replace_header(vector, "authorization", auth))
    assert caught.value.code == "IncompleteSignature"


def test_body_hash_is_checked() -> None:
    with pytest.raises(SignatureError) as caught:
        _verify(ACS3_VECTORS[0], body=b"{}")
    assert caught.value.code == "SignatureDoesNotMatch"


def test_sign_then_verify_round_trip_with_sts_token_and_awkward_values() -> None:
    service = "svc name/x~y*é'()!"
    params = {"Filter": "a+b=c&d*~'()! %", "IsSpot": "true", "PageNumber": "3"}
    headers = {
        "host": "127.0.0.1:8001",
        "x-acs-action": "ListServiceInstances",
        "x-acs-version": "2021-07-01",
        "x-acs-date": "2026-11-28T13:46:47Z",
        "x-acs-signature-nonce": "n1",
        "x-acs-content-sha256": signing.EMPTY_BODY_SHA256,
        "x-acs-accesskey-id": "STS.abc",
        "x-acs-security-token": "tok",
    }
    path = f"/api/v2/services/cn-shanghai/{percent_encode(service)}/instances"
    authorization = sign(
        method="GET", canonical_uri=path, params=params, headers=headers,
        access_key_id="STS.abc", access_key_secret="s3cret",
    )  # fmt: skip
    wire_headers = [*headers.items(), ("Authorization", authorization)]
    # Sent with yarl-style re-normalisation: "*" and "'" unescaped, a space as "+".
    raw_path = path.replace("%2A", "*").replace("%27", "'")
    raw_query = "Filter=a%2Bb%3Dc%26d*~'()!+%25&IsSpot=true&PageNumber=3"
    verified = verify(
        method="GET", raw_path=raw_path, raw_query=raw_query, headers=wire_headers, body=b"",
        secret_for={"STS.abc": "s3cret"}.get,
    )  # fmt: skip
    assert verified.security_token == "tok"


def test_format_date_is_whole_utc_seconds() -> None:
    moment = datetime(2026, 11, 28, 13, 46, 47, 999_999, tzinfo=UTC)
    assert signing.format_date(moment) == "2026-11-28T13:46:47Z"


@pytest.mark.parametrize(
    "raw_query",
    ["", "PageNumber=3&PageSize=100", "b=2&a=1&b=3", "&&a=1&", "a", "a=&b", "Filter=a+b%2A*",
     "Label=%7B%22k%22%3A%22v%22%7D", "x~y=z.w-_"],
)  # fmt: skip
def test_the_canonical_query_fast_path_agrees_with_the_recipe(raw_query: str) -> None:
    params = {}
    for pair in filter(None, raw_query.split("&")):
        key, _, value = pair.partition("=")
        params[unquote_plus(key)] = unquote_plus(value)
    assert signing._canonical_query_from_raw(raw_query) == signing.canonical_query(params)


@pytest.mark.parametrize(
    "raw_path", ["", "/", "/api/v2/regions", "/api/v2/services/cn-x/a.b~c_d-e/instances", "/a/b%2Fc/d*e"]
)
def test_the_canonical_path_fast_path_agrees_with_the_recipe(raw_path: str) -> None:
    expected = "/".join(percent_encode(unquote(s)) for s in raw_path.split("/")) or "/"
    assert signing.canonical_uri_from_raw(raw_path) == expected


def test_a_header_sent_twice_is_signed_as_its_sorted_values_joined() -> None:
    vector = ACS3_VECTORS[2]
    auth = signing.parse_authorization(vector.authorization)
    headers = {k.lower(): v for k, v in vector.headers if k.lower() in auth.signed_headers}
    headers["x-acs-action"] = "a,b"  # the values sorted and joined, however they were sent
    params = {}
    for pair in filter(None, vector.query_string.split("&")):
        key, _, value = pair.partition("=")
        params[unquote_plus(key)] = unquote_plus(value)
    authorization = sign(
        method=vector.method, canonical_uri=vector.raw_path, params=params, headers=headers,
        access_key_id="testid", access_key_secret="testsecret",
    )  # fmt: skip
    headers["x-acs-action"] = "a"
    wire = [*headers.items(), ("X-Acs-Action", "b"), ("Authorization", authorization)]
    assert _verify(vector, headers=wire).action == "a,b"
