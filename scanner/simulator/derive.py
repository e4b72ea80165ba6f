"""Cheap deterministic building blocks: 64-bit hashing, timestamps, pod-style names, vocabularies.

Everything in the fleet is derived from integers with ``mix64`` rather than drawn from a stored
``random.Random`` stream, so any instance can be rebuilt on demand, in any order, in about a
microsecond, without keeping a million instances in memory.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final, TypeVar

__all__ = [
    "ANCHOR_EPOCH",
    "DAY_PREFIX",
    "DOT_PAIR",
    "DOT_TAIL",
    "GOLDEN",
    "M64",
    "OCTET",
    "SECOND_OF_DAY",
    "SUFFIX_ALPHABET",
    "SUFFIX_PAIRS",
    "SUFFIX_SPACE",
    "epoch_of",
    "iso",
    "mix64",
    "pick",
    "pod_suffix",
    "token",
]

M64: Final = (1 << 64) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15

#: Every generated (initial) timestamp is before this moment; anything churn creates is after it.
ANCHOR_EPOCH: Final = int(datetime(2025, 12, 31, tzinfo=UTC).timestamp())


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


_T = TypeVar("_T")


def pick(options: tuple[_T, ...], h: int) -> _T:
    return options[h % len(options)]


_TOKEN_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz0123456789"


def token(h: int, length: int, alphabet: str = _TOKEN_ALPHABET) -> str:
    """``length`` characters of ``alphabet`` spelled out from the hash ``h`` (re-mixed as needed)."""
    out: list[str] = []
    base = len(alphabet)
    while len(out) < length:
        h = mix64(h)
        for _ in range(8):
            out.append(alphabet[h % base])
            h //= base
            if len(out) == length:
                break
    return "".join(out)


# --- pod-style instance names ------------------------------------------------------------------

#: Kubernetes' name-suffix alphabet (no vowels, no confusable digits): 27 symbols.
SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_SPACE: Final = 27**5
SUFFIX_PAIRS: Final = tuple(a + b for a in SUFFIX_ALPHABET for b in SUFFIX_ALPHABET)


def pod_suffix(value: int) -> str:
    """The 5-character suffix for ``value`` in ``[0, 27**5)``; distinct values give distinct suffixes."""
    head, rest = divmod(value, 729 * 729)
    return SUFFIX_ALPHABET[head] + SUFFIX_PAIRS[rest // 729] + SUFFIX_PAIRS[rest % 729]


# --- timestamps --------------------------------------------------------------------------------


# Rendering a page of instances is string assembly; these tables turn the per-field formatting
# (the costliest part, ~0.5 µs a field) into indexing. About 9 MB, built once at import.
SECOND_OF_DAY: Final = tuple(
    f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)
)
#: ``OCTET[x]`` is ``str(x)``, ``DOT_TAIL[x]`` is ``"." + str(x)``,
#: ``DOT_PAIR[x]`` is ``"a.b"`` for x = a*256+b.
OCTET: Final = tuple(str(x) for x in range(256))
DOT_TAIL: Final = tuple("." + o for o in OCTET)
DOT_PAIR: Final = tuple(a + "." + b for a in OCTET for b in OCTET)
#: ``"YYYY-MM-DDT"`` per Unix day, filled by ``iso`` (a cache: a fleet spans a few hundred days).
DAY_PREFIX: dict[int, str] = {}


def iso(epoch: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for a Unix time (the API's format)."""
    day, second = divmod(epoch, 86400)
    prefix = DAY_PREFIX.get(day)
    if prefix is None:
        prefix = DAY_PREFIX[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    return prefix + SECOND_OF_DAY[second]


def epoch_of(moment: datetime) -> int:
    return int(moment.timestamp())
