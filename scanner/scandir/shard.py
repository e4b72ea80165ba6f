"""``--shard I/N``: which (account, region) units shard I of N lists.

A unit belongs to shard ``int(sha256(name)[:8 bytes], big-endian) mod N``, where ``name`` is the
unit's partition folder as UTF-8 text: ``region=<ClusterId>`` in a single-account scan,
``account=<AccountId>/region=<ClusterId>`` in a multi-account one (``Unit.folder``). It depends on
nothing but the unit's names: not on Python's hash seed, nor on the order in which accounts and
regions are listed, nor on the other units, so N processes with the same arguments and I = 0..N-1
list disjoint sets of units whose union is every unit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scanner.errors import ConfigError
from scanner.scandir.layout import Unit

__all__ = ["Shard", "shard_of"]


def shard_of(unit: Unit, count: int) -> int:
    """The shard (0..count-1) that lists ``unit``."""
    digest = hashlib.sha256(unit.folder.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``Shard.parse("2/8")``); ``shard(account, region)``: does it list it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"--shard I/N needs 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        if not (sep and index.strip().isdigit() and count.strip().isdigit()):
            raise ConfigError(f"--shard takes I/N (e.g. 0/4), got {text!r}")
        return cls(int(index), int(count))

    def __call__(self, account: str | None, region: str) -> bool:
        return shard_of(Unit(account, region), self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
