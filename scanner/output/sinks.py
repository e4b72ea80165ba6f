"""How records are written: JSON Lines or CSV, a page at a time.

Each page's bytes end on a line boundary, so an output that stops between pages never holds half a
line. Where the bytes go (stdout, or a file that appears whole or not at all) is ``files``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

import orjson

from scanner.eas.params import INSTANCE_FIELDS
from scanner.errors import ConfigError
from scanner.records import encode_jsonl

__all__ = [
    "ACCOUNT_CSV_COLUMNS",
    "CSV_COLUMNS",
    "CsvEncoder",
    "JsonlEncoder",
    "RecordEncoder",
    "encoder_for",
]

#: CSV columns: where the instance lives, then every Instance field of the API.
CSV_COLUMNS: Final[tuple[str, ...]] = ("ClusterId", "ServiceName", *INSTANCE_FIELDS)
#: The columns of a multi-account scan: the account first.
ACCOUNT_CSV_COLUMNS: Final[tuple[str, ...]] = ("AccountId", *CSV_COLUMNS)

Format = Literal["jsonl", "csv"]


class RecordEncoder(Protocol):
    def header(self) -> bytes: ...

    def encode(self, records: list[dict[str, Any]]) -> bytes: ...


class JsonlEncoder:
    """One compact JSON object per line (the record exactly as the engine yields it)."""

    def header(self) -> bytes:
        return b""

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        return encode_jsonl(records)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class CsvEncoder:
    """One row per instance; nested values (``LastState``) as JSON text; booleans as true/false."""

    def __init__(self, columns: Sequence[str] = CSV_COLUMNS) -> None:
        self._columns = tuple(columns)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def _flush(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()

    def header(self) -> bytes:
        self._writer.writerow(self._columns)
        return self._flush()

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        columns = self._columns
        self._writer.writerows([[_csv_cell(record.get(name)) for name in columns] for record in records])
        return self._flush()


def encoder_for(fmt: str, *, account_column: bool = False) -> RecordEncoder:
    """The encoder of ``fmt``; ``account_column``: a multi-account scan (CSV gets ``AccountId``)."""
    if fmt == "jsonl":
        return JsonlEncoder()
    if fmt == "csv":
        return CsvEncoder(ACCOUNT_CSV_COLUMNS if account_column else CSV_COLUMNS)
    raise ConfigError(f"unknown output format {fmt!r}: use jsonl or csv")
