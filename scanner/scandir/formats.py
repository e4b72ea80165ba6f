"""The formats a part can be written in, and how to read records (or raw lines) back from a part.

- ``jsonl``: the bytes ``eas-scan scan`` writes (``scanner.output.sinks.JsonlEncoder``);
- ``csv``: the CLI's CSV (``CsvEncoder``: a header, then one row per instance, nested values as JSON);
- ``parquet``: ``scanner.output.parquet`` (the ``[parquet]`` extra), imported only when used.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import orjson

from scanner.errors import ConfigError
from scanner.output.sinks import ACCOUNT_CSV_COLUMNS, CSV_COLUMNS, CsvEncoder, JsonlEncoder, RecordEncoder

__all__ = [
    "FORMATS",
    "Format",
    "PartEncoder",
    "check_format",
    "iter_jsonl_lines",
    "iter_records",
    "part_encoder",
]

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: Final[tuple[str, ...]] = ("jsonl", "csv", "parquet")


class PartEncoder(Protocol):
    """``header()`` once, ``encode(page)`` per page, ``finish()`` once: concatenated, one whole file."""

    def header(self) -> bytes: ...

    def encode(self, records: list[dict[str, Any]]) -> bytes: ...

    def finish(self) -> bytes: ...


class _Finished:
    """A line-oriented encoder of ``scanner.output.sinks`` (nothing to add at the end)."""

    def __init__(self, encoder: RecordEncoder) -> None:
        self._encoder = encoder

    def header(self) -> bytes:
        return self._encoder.header()

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        return self._encoder.encode(records)

    def finish(self) -> bytes:
        return b""


def check_format(fmt: str) -> Format:
    """``fmt`` if known (and, for Parquet, pyarrow importable); ConfigError naming the fix otherwise."""
    if fmt == "jsonl":
        return "jsonl"
    if fmt == "csv":
        return "csv"
    if fmt == "parquet":
        import scanner.output.parquet  # noqa: F401  (ConfigError naming the extra when pyarrow is missing)

        return "parquet"
    raise ConfigError(f"unknown output format {fmt!r}: use jsonl, csv or parquet")


def part_encoder(fmt: str, *, account_column: bool = False) -> PartEncoder:
    """The encoder of ``fmt``; ``account_column``: a multi-account scan (CSV gets ``AccountId``)."""
    if fmt == "jsonl":
        return _Finished(JsonlEncoder())
    if fmt == "csv":
        return _Finished(CsvEncoder(ACCOUNT_CSV_COLUMNS if account_column else CSV_COLUMNS))
    if fmt == "parquet":
        from scanner.output.parquet import ParquetEncoder

        return ParquetEncoder()
    raise ConfigError(f"unknown output format {fmt!r}: use jsonl, csv or parquet")


def iter_records(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    """The records of a file, one at a time. CSV gives text cells (empty cells left out)."""
    if fmt == "jsonl":
        for line in iter_jsonl_lines(path):
            yield orjson.loads(line)
    elif fmt == "parquet":
        from scanner.output.parquet import read_records

        yield from read_records(path)
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                yield {key: value for key, value in row.items() if value != ""}
    else:
        raise ConfigError(f"unknown output format {fmt!r}: use jsonl, csv or parquet")


def iter_jsonl_lines(path: Path) -> Iterator[bytes]:
    """The non-empty lines of a JSON Lines file, without their newline (1 MB reads)."""
    with path.open("rb", buffering=1 << 20) as file:
        for line in file:
            stripped = line.rstrip(b"\r\n")
            if stripped:
                yield stripped
