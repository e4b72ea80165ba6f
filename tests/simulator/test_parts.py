"""The small parts on their own: the page cache, the token bucket, digests."""

from __future__ import annotations

import hashlib

import pytest

from scanner.simulator.cache import PageCache
from scanner.simulator.digest import DigestBuilder, key_hash, record_content_digest, record_key_digest
from scanner.simulator.throttle import AdmissionBucket, ServerThrottle


def test_page_cache_is_lru_by_bytes() -> None:
    cache = PageCache(100)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recent
    cache.put("c", b"z" * 40)  # evicts b, the least recently used
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert (cache.bytes, len(cache), cache.hits, cache.misses) == (80, 2, 3, 1)
    cache.put("big", b"q" * 101)  # bigger than the whole cache: not kept
    assert cache.get("big") is None
    cache.put("a", b"w" * 10)  # replacing adjusts the size
    assert cache.bytes == 50
    assert len(PageCache(0)) == 0
    off = PageCache(0)
    off.put("a", b"x")
    assert off.get("a") is None


def test_token_bucket() -> None:
    bucket = AdmissionBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0  # refilled to the burst, not beyond
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_rate_limiter_keys_and_switching_off() -> None:
    now = [0.0]
    limiter = ServerThrottle(lambda: now[0], rate=1, burst=1)
    assert limiter.take(("r", "a")) == 0.0
    assert limiter.take(("r", "a")) > 0
    assert limiter.take(("r", "b")) == 0.0
    limiter.configure(None, 1)
    assert all(limiter.take(("r", "a")) == 0.0 for _ in range(10))
    with pytest.raises(ValueError, match="rate"):
        limiter.configure(0, 1)


def test_digest_recipe_is_pinned_order_free_and_counts_duplicates() -> None:
    keys = [("cn-hangzhou", "svc", f"svc-abc-{i}") for i in range(50)]
    digest = record_key_digest(keys)
    assert digest == record_key_digest(reversed(keys))
    assert digest.count == 50
    assert record_key_digest([*keys, keys[0]]) != record_key_digest([*keys, keys[1]])
    assert record_key_digest([*keys, keys[0]]).digest != digest.digest
    # The recipe, spelled out: BLAKE2b-128 of "region\x1fservice\x1finstance", summed mod 2**128.
    assert key_hash("cn-hangzhou", "svc", "svc-abc-0") == int.from_bytes(
        hashlib.blake2b(b"cn-hangzhou\x1fsvc\x1fsvc-abc-0", digest_size=16).digest(), "big"
    )
    assert record_key_digest([]).to_dict() == {"count": 0, "digest": "0" * 32}
    builder = DigestBuilder()
    for key in keys:
        builder.add_key(*key)
    assert builder.result() == digest
    a = record_content_digest([("r", "s", {"B": 1, "A": 2})])
    assert a == record_content_digest([("r", "s", {"A": 2, "B": 1})])
    assert a != record_content_digest([("r", "s", {"A": 2, "B": 3})])
