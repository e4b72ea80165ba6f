"""A least-recently-used cache bounded by the total size of its values, for rendered page bodies.

Keys carry the version of what the page was rendered from (a service or region version that
churn bumps), so a stale page is never served: it is simply never asked for again, and ages out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["PageCache"]


class PageCache:
    """``bytes`` values under hashable keys, evicting the least recently used beyond ``max_bytes``."""

    __slots__ = ("_entries", "bytes", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> bytes | None:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        size = len(value)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= len(evicted)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __repr__(self) -> str:
        return f"PageCache({len(self._entries)} pages, {self.bytes}/{self.max_bytes} bytes)"
