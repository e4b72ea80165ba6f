"""Order-independent digests of a set of instance records, so a client can prove its output exact.

The recipe (reuse these functions rather than re-deriving it):

- Each record's key is ``(ClusterId, ServiceName, InstanceName)`` (the region id is the ClusterId).
- ``key_hash`` = the BLAKE2b-128 digest of ``ClusterId + "\\x1f" + ServiceName + "\\x1f" +
  InstanceName`` (UTF-8), read as a big-endian unsigned integer.
- The digest is the **sum** of the key hashes modulo 2**128, as 32 lower-case hex digits, together
  with the count. A sum (unlike XOR) also catches a record emitted twice.

``content_hash`` does the same over the whole instance object (``orjson`` with sorted keys,
prefixed by the key), for when the field values must match too (a fleet without churn).

In an organisation, each member account has its own digest (``account_key_digests`` groups a
multi-account scan's keys by AccountId, to compare with ``GET /_simulator/org/digests``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "Digest",
    "DigestBuilder",
    "account_key_digests",
    "content_hash",
    "key_hash",
    "record_content_digest",
    "record_key_digest",
]

_MOD: Final = 1 << 128
_SEP: Final = "\x1f"


def key_hash(cluster_id: str, service_name: str, instance_name: str) -> int:
    data = f"{cluster_id}{_SEP}{service_name}{_SEP}{instance_name}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def content_hash(cluster_id: str, service_name: str, instance: Mapping[str, Any]) -> int:
    data = f"{cluster_id}{_SEP}{service_name}{_SEP}".encode() + orjson.dumps(
        instance, option=orjson.OPT_SORT_KEYS
    )
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


@dataclass(frozen=True, slots=True)
class Digest:
    count: int
    digest: str  # 32 hex digits

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "digest": self.digest}


class DigestBuilder:
    """Accumulates hashes one record at a time (for streaming output)."""

    __slots__ = ("_sum", "count")

    def __init__(self) -> None:
        self._sum = 0
        self.count = 0

    def add_hash(self, value: int) -> None:
        self._sum = (self._sum + value) % _MOD
        self.count += 1

    def add_key(self, cluster_id: str, service_name: str, instance_name: str) -> None:
        self.add_hash(key_hash(cluster_id, service_name, instance_name))

    def result(self) -> Digest:
        return Digest(self.count, f"{self._sum:032x}")


def record_key_digest(keys: Iterable[tuple[str, str, str]]) -> Digest:
    """The digest of a set of ``(ClusterId, ServiceName, InstanceName)`` keys, in any order."""
    builder = DigestBuilder()
    for cluster_id, service_name, instance_name in keys:
        builder.add_key(cluster_id, service_name, instance_name)
    return builder.result()


def account_key_digests(keys: Iterable[tuple[str, str, str, str]]) -> dict[str, Digest]:
    """Per AccountId, the digest of its ``(AccountId, ClusterId, ServiceName, InstanceName)`` keys:
    what ``GET /_simulator/org/digests`` answers for an organisation, for a multi-account scan."""
    builders: dict[str, DigestBuilder] = {}
    for account, cluster_id, service_name, instance_name in keys:
        builder = builders.get(account)
        if builder is None:
            builder = builders[account] = DigestBuilder()
        builder.add_key(cluster_id, service_name, instance_name)
    return {account: builder.result() for account, builder in builders.items()}


def record_content_digest(records: Iterable[tuple[str, str, Mapping[str, Any]]]) -> Digest:
    """The digest of ``(ClusterId, ServiceName, instance object)`` records, in any order."""
    builder = DigestBuilder()
    for cluster_id, service_name, instance in records:
        builder.add_hash(content_hash(cluster_id, service_name, instance))
    return builder.result()
