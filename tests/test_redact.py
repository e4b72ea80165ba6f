"""The redactor: secrets removed, access key ids masked, wherever they sit in the text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.client import redact as redact_module
from scanner.client.redact import REMOVED, Redactor, mask_access_key_id

KEY_ID, SECRET, TOKEN = "LTAI5tAbCdEfGh1234wxyz", "s3cr3t/Value+0123456789", "CAIS" + "t0k/en" * 50


@pytest.fixture
def redact() -> Redactor:
    return Redactor(secrets=[SECRET, TOKEN, None], key_ids=[KEY_ID])


def test_mask_access_key_id() -> None:
    assert mask_access_key_id("LTAI5tAbCdEfwxyz") == "LTAI****wxyz"
    assert mask_access_key_id("STS.NUgYrLnoC37mZZCN") == "STS.****ZZCN"
    assert mask_access_key_id("short") == "****"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"x-acs-security-token: {TOKEN}", f"x-acs-security-token: {REMOVED}"),
        (f"{SECRET}{SECRET}", REMOVED * 2),  # adjacent, at the start
        (f"Credential={KEY_ID},SignedHeaders=host", "Credential=LTAI****wxyz,SignedHeaders=host"),
        (f"id:{KEY_ID}", "id:LTAI****wxyz"),
        ("another key LTAI9zYxWvUtSr5678abcd.", "another key LTAI****abcd."),
        ("an STS key STS.NUgYrLnoC37mZZCNnAbez", "an STS key STS.****Abez"),
        ("LTAI is a prefix, LTAIshort too", "LTAI is a prefix, LTAIshort too"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_text_is_redacted_wherever_the_secret_is(redact: Redactor, text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_key_id_in_use_is_masked_even_when_not_shaped_like_one() -> None:
    redact = Redactor(key_ids=["testid-42"])
    assert redact("Credential=testid-42,") == "Credential=test****d-42,"


def test_short_values_are_not_redacted() -> None:
    assert Redactor(secrets=["abc"], key_ids=["ab"])("abc ab") == "abc ab"


def test_values_added_later_are_redacted_too(redact: Redactor) -> None:
    redact.add("later-secret", 42)
    assert redact("a later-secret b") == f"a {REMOVED} b"


def test_scrub_removes_the_secret_bytes_in_both_json_spellings(redact: Redactor) -> None:
    escaped = TOKEN.replace("/", "\\/")
    body = f'{{"a": "{TOKEN}", "b": "{escaped}", "c": "{SECRET}"}}'.encode()
    assert redact.scrub(body) == b'{"a": "***", "b": "***", "c": "***"}'


def test_scrub_returns_the_same_object_when_nothing_matches(redact: Redactor) -> None:
    body = b'{"Instances": []}'
    assert redact.scrub(body) is body


def test_optional_lets_none_through(redact: Redactor) -> None:
    assert redact.optional(None) is None
    assert redact.optional(SECRET) == REMOVED


@pytest.mark.parametrize(
    "token",
    ["CAIS" + "A1b2C3d4E5f6G7h8" * 8 + "/" + "Zz9Yy8Xx7Ww6Vv5U" * 4, "CAIS" + "ab/c" * 30],
    ids=["long runs between slashes", "short runs"],
)
def test_scrub_finds_both_spellings_however_the_slashes_fall(token: str) -> None:
    redact = Redactor(secrets=[token])
    escaped = token.replace("/", "\\/")
    assert redact.scrub(f"[{token}|{escaped}]".encode()) == b"[***|***]"
    assert redact.scrub(token[:-3].encode()) == token[:-3].encode()  # only the whole value


# --- the anchored search behind scrub: only its speed depends on the rare byte ----------------


def _naive_scrub(secrets: list[str], body: bytes) -> bytes:
    """What scrub must return: every secret's two JSON spellings replaced, longest secret first."""
    for secret in sorted(dict.fromkeys(s for s in secrets if len(s) >= 4), key=len, reverse=True):
        raw = secret.encode()
        for spelling in dict.fromkeys((raw, raw.replace(b"/", b"\\/"))):
            body = body.replace(spelling, REMOVED.encode())
    return body


def test_scrub_finds_the_secret_among_many_decoys_of_its_rarest_byte() -> None:
    secret = "abcdefghQrstuvwxyz0123"  # Q is its rarest byte
    decoys = b"Q" * 40 + b"abcdefghQ" * 30  # more false places than the compares allowed
    body = decoys + secret.encode() + b"Q"
    assert Redactor(secrets=[secret]).scrub(body) == decoys + b"***Q"
    assert Redactor(secrets=[secret]).scrub(decoys) is decoys


@pytest.mark.parametrize("where", [0, 1, 500])
def test_scrub_finds_the_secret_at_the_edges(where: int) -> None:
    secret = "Qxyzxyzxyzxyzxyzxyz"
    body = b"Q" * where + secret.encode()
    assert Redactor(secrets=[secret]).scrub(body) == b"Q" * where + b"***"


_ALPHABET = "QZab/\\x"


@given(
    secrets=st.lists(st.text(_ALPHABET, min_size=4, max_size=24), min_size=1, max_size=3),
    parts=st.lists(st.one_of(st.text(_ALPHABET, max_size=6), st.integers(0, 2)), max_size=40),
)
def test_scrub_equals_replacing_every_spelling(secrets: list[str], parts: list[str | int]) -> None:
    # Bodies made of the secrets' own bytes and of whole secrets (both spellings): decoys galore.
    pieces = []
    for part in parts:
        if isinstance(part, int):
            secret = secrets[part % len(secrets)]
            pieces.append(secret.replace("/", "\\/") if part == 2 else secret)
        else:
            pieces.append(part)
    body = "".join(pieces).encode()
    assert Redactor(secrets=secrets).scrub(body) == _naive_scrub(secrets, body)


@given(
    needle=st.text("ab", min_size=1, max_size=8).map(str.encode),
    body=st.text("ab", max_size=300).map(str.encode),
    offset=st.integers(0, 7),
)
def test_contains_is_a_substring_test(needle: bytes, body: bytes, offset: int) -> None:
    # Two letters: the anchor is everywhere, so the compares run out and the plain search ends it.
    offset %= len(needle)
    assert redact_module._contains(body, needle, offset, needle[offset]) == (needle in body)
