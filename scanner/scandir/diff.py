"""Compare two scans, instance by instance, in bounded memory.

A scan is a scan directory (any part format) or a plain record file (JSON Lines, or Parquet when the
name ends in ``.parquet``). Records are matched by (AccountId, ClusterId, ServiceName, InstanceName);
each difference is one JSON line::

    {"change": "added" | "removed" | "changed", "key": {"AccountId", "ClusterId", "ServiceName",
     "InstanceName"}, "fields": [names that changed], "old": {...} | null, "new": {...} | null}

``fields`` lists top-level field names, and ``Service.<name>`` for a field of ``Service``.

Honest about gaps: a unit (account, region) is compared only when both scans hold it complete. In a
scan directory that is its entry saying ``complete``; a unit with no entry there (not scanned, or its
run interrupted) or an ``incomplete`` one is not compared: its instances are neither added nor
removed, and it is listed in the summary's ``not_compared``. A plain record file says nothing about
completeness, so every unit of a file counts as complete (a region absent from it, as empty).

Memory: the two sides are first split, by a stable hash of the key, into buckets of about
``bucket_records`` records in temporary files (each line the key and the record's JSON text); then
each bucket of the old scan is loaded into a dict and the new scan's bucket is streamed against it.
Memory is one bucket (about 30 MB at the default 20,000 records) plus the bucket files' buffers,
whatever the size of the scans; the cost is writing and reading both scans once more on disk.
"""

from __future__ import annotations

import math
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from scanner.errors import ConfigError
from scanner.scandir.directory import PartEntry, ScanDirectory, merged_entries
from scanner.scandir.formats import iter_jsonl_lines, iter_records
from scanner.scandir.layout import SCAN_FILE, Unit

__all__ = [
    "DEFAULT_BUCKET_RECORDS",
    "DiffSummary",
    "ScanSource",
    "diff_exit_code",
    "diff_scans",
    "status_exit_code",
]

DEFAULT_BUCKET_RECORDS: Final = 20_000
_MAX_BUCKETS: Final = 512
#: A guess of the bytes of a JSON Lines record, to size the buckets of a plain file.
_BYTES_PER_RECORD: Final = 800
_KEY_FIELDS: Final = ("AccountId", "ClusterId", "ServiceName", "InstanceName")


def diff_exit_code(summary: DiffSummary) -> int:
    """0 when every unit was compared (with or without changes), 3 when some were not."""
    return 3 if summary.not_compared else 0


def status_exit_code(status: dict[str, Any]) -> int:
    """``eas-scan status``: 0 when the scan directory is complete, 3 when it is not."""
    return 0 if status.get("complete") else 3


@dataclass(slots=True)
class _Counts:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
        }


@dataclass(slots=True)
class DiffSummary:
    """Counts per change and per (account, region), and the units that could not be compared."""

    totals: _Counts = field(default_factory=_Counts)
    units: dict[Unit, _Counts] = field(default_factory=dict)
    not_compared: list[dict[str, Any]] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=lambda: {"old": 0, "new": 0})
    buckets: int = 0
    #: The most records of the old scan held in memory at once (one bucket).
    peak_bucket_records: int = 0

    @property
    def exit_code(self) -> int:
        return diff_exit_code(self)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.totals.to_json(),
            "units": [
                {"account": unit.account, "region": unit.region, **counts.to_json()}
                for unit, counts in sorted(self.units.items(), key=lambda item: _sort_key(item[0]))
            ],
            "not_compared": self.not_compared,
            "duplicates": self.duplicates,
            "exit_code": self.exit_code,
        }


def _sort_key(unit: Unit) -> tuple[str, str]:
    return (unit.account or "", unit.region)


class ScanSource:
    """One side of a diff: a record file, or a scan in one directory or several (its shards)."""

    def __init__(self, paths: str | Path | Sequence[str | Path]) -> None:
        many = [Path(path) for path in ([paths] if isinstance(paths, str | Path) else paths)]
        if not many:
            raise ConfigError("no scan given: a scan directory (or several) or a record file")
        self.path = many[0]
        self.entries: dict[Unit, tuple[ScanDirectory, PartEntry]] | None = None
        #: The status of each unit (scan directories); None for a record file (every unit complete).
        self.statuses: dict[Unit, str] | None = None
        if all((path / SCAN_FILE).exists() for path in many):
            self.entries = merged_entries([ScanDirectory.open(path) for path in many])
            self.statuses = {unit: entry.status for unit, (_, entry) in self.entries.items()}
            return
        for path in many:
            if path.is_dir() and not (path / SCAN_FILE).exists():
                raise ConfigError(f"{path} is a folder but not a scan directory (no {SCAN_FILE})")
            if not path.exists():
                raise ConfigError(f"{path} does not exist: give a scan directory or a record file")
        if len(many) > 1:
            raise ConfigError("several scans on one side must all be scan directories (shards of one scan)")

    def status(self, unit: Unit) -> str:
        if self.statuses is None:
            return "complete"
        return self.statuses.get(unit, "missing")

    def estimated_records(self) -> int:
        if self.entries is not None:
            return sum(entry.records for _, entry in self.entries.values())
        if self.path.suffix == ".parquet":
            from scanner.output.parquet import row_count

            return row_count(self.path)
        return self.path.stat().st_size // _BYTES_PER_RECORD + 1

    def lines(self, wanted: Callable[[Unit], bool]) -> Iterator[tuple[Unit, bytes, bytes]]:
        """(unit, key JSON, record JSON) for each record of a unit ``wanted`` accepts."""
        if self.entries is None:
            yield from self._file_lines(wanted)
            return
        for unit, (directory, entry) in sorted(self.entries.items(), key=lambda item: _sort_key(item[0])):
            if entry.file is None or not wanted(unit):
                continue
            yield from _keyed(directory.path / entry.file, entry.format, unit)

    def _file_lines(self, wanted: Callable[[Unit], bool]) -> Iterator[tuple[Unit, bytes, bytes]]:
        fmt = "parquet" if self.path.suffix == ".parquet" else "jsonl"
        for unit, key, line in _keyed(self.path, fmt, None):
            if wanted(unit):
                yield unit, key, line


def _key_of(record: dict[str, Any], unit: Unit | None) -> tuple[Unit, bytes]:
    account = record.get("AccountId")
    region = record.get("ClusterId")
    if unit is not None:
        account = unit.account if account is None else account
        region = unit.region if region is None else region
    key = [account, region, record.get("ServiceName"), record.get("InstanceName")]
    return Unit(account, str(region)), orjson.dumps(key)


def _keyed(path: Path, fmt: str, unit: Unit | None) -> Iterator[tuple[Unit, bytes, bytes]]:
    if fmt == "jsonl":
        loads = orjson.loads
        for line in iter_jsonl_lines(path):
            record_unit, key = _key_of(loads(line), unit)
            yield record_unit, key, line
    else:
        for record in iter_records(path, fmt):
            record_unit, key = _key_of(record, unit)
            yield record_unit, key, orjson.dumps(record)


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    fields: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name, _MISSING), new.get(name, _MISSING)
        if a == b and type(a) is type(b):
            continue
        if name == "Service" and isinstance(a, dict) and isinstance(b, dict):
            fields.extend(
                f"Service.{sub}"
                for sub in sorted(a.keys() | b.keys())
                if a.get(sub, _MISSING) != b.get(sub, _MISSING)
            )
        else:
            fields.append(name)
    return fields


_MISSING: Final = object()


def _key_object(key: bytes) -> dict[str, Any]:
    return dict(zip(_KEY_FIELDS, orjson.loads(key), strict=True))


def _spill(source: ScanSource, wanted: Callable[[Unit], bool], folder: Path, buckets: int) -> list[Path]:
    paths = [folder / f"{index}.lines" for index in range(buckets)]
    files = [path.open("wb", buffering=1 << 15) for path in paths]
    try:
        crc = zlib.crc32
        for _unit, key, line in source.lines(wanted):
            files[crc(key) % buckets].write(b"".join((key, b"\t", line, b"\n")))
    finally:
        for file in files:
            file.close()
    return paths


def _bucket_lines(path: Path) -> Iterator[tuple[bytes, bytes]]:
    with path.open("rb", buffering=1 << 20) as file:
        for line in file:
            key, _, record = line.rstrip(b"\n").partition(b"\t")
            yield key, record


def diff_scans(
    old: str | Path | Sequence[str | Path],
    new: str | Path | Sequence[str | Path],
    out: IO[bytes] | Callable[[bytes], Any],
    *,
    bucket_records: int = DEFAULT_BUCKET_RECORDS,
    temp_dir: str | Path | None = None,
) -> DiffSummary:
    """Write the changes from ``old`` to ``new`` as JSON lines to ``out``; return the summary.

    Each side is a record file, a scan directory, or a list of scan directories holding one scan
    (the shards of a scan written into one directory each).
    """
    if bucket_records < 1:
        raise ConfigError(f"bucket_records must be >= 1, got {bucket_records}")
    write: Callable[[bytes], Any] = out if callable(out) else out.write
    sources = ScanSource(old), ScanSource(new)
    summary = DiffSummary()

    known: set[Unit] = set()
    for source in sources:
        if source.statuses is not None:
            known.update(source.statuses)
    skipped: dict[Unit, tuple[str, str]] = {}

    def wanted(unit: Unit) -> bool:
        statuses = (sources[0].status(unit), sources[1].status(unit))
        if statuses == ("complete", "complete"):
            return True
        skipped[unit] = statuses
        return False

    for unit in known:  # units a scan directory knows, even if neither side has records of them
        wanted(unit)
    estimate = max(source.estimated_records() for source in sources)
    buckets = max(1, min(_MAX_BUCKETS, math.ceil(estimate / bucket_records)))
    summary.buckets = buckets
    with tempfile.TemporaryDirectory(prefix="eas-scan-diff-", dir=temp_dir) as temp:
        folder = Path(temp)
        (folder / "old").mkdir()
        (folder / "new").mkdir()
        old_buckets = _spill(sources[0], wanted, folder / "old", buckets)
        new_buckets = _spill(sources[1], wanted, folder / "new", buckets)
        for old_path, new_path in zip(old_buckets, new_buckets, strict=True):
            _diff_bucket(old_path, new_path, write, summary)
            old_path.unlink()
            new_path.unlink()
    summary.not_compared = [
        {"account": unit.account, "region": unit.region, "old": statuses[0], "new": statuses[1]}
        for unit, statuses in sorted(skipped.items(), key=lambda item: _sort_key(item[0]))
    ]
    return summary


def _diff_bucket(old_path: Path, new_path: Path, write: Callable[[bytes], Any], summary: DiffSummary) -> None:
    old: dict[bytes, bytes] = {}
    for key, record in _bucket_lines(old_path):
        if key in old:
            summary.duplicates["old"] += 1
        old[key] = record
    summary.peak_bucket_records = max(summary.peak_bucket_records, len(old))
    seen: set[bytes] = set()
    dumps, loads = orjson.dumps, orjson.loads
    totals = summary.totals

    def counts(key: bytes) -> _Counts:
        account, region = loads(key)[:2]
        unit = Unit(account, region)
        found = summary.units.get(unit)
        if found is None:
            found = summary.units[unit] = _Counts()
        return found

    for key, record in _bucket_lines(new_path):
        if key in seen:
            summary.duplicates["new"] += 1
            continue
        seen.add(key)
        before = old.pop(key, None)
        if before is None:
            totals.added += 1
            counts(key).added += 1
            change: dict[str, Any] = {"change": "added", "key": _key_object(key), "fields": []}
            change.update(old=None, new=loads(record))
            write(dumps(change, option=orjson.OPT_APPEND_NEWLINE))
            continue
        if before == record:
            totals.unchanged += 1
            counts(key).unchanged += 1
            continue
        old_record, new_record = loads(before), loads(record)
        fields = _changed_fields(old_record, new_record)
        if not fields:  # the same record, its keys in another order
            totals.unchanged += 1
            counts(key).unchanged += 1
            continue
        totals.changed += 1
        counts(key).changed += 1
        change = {"change": "changed", "key": _key_object(key), "fields": fields}
        change.update(old=old_record, new=new_record)
        write(dumps(change, option=orjson.OPT_APPEND_NEWLINE))
    for key, record in old.items():
        totals.removed += 1
        counts(key).removed += 1
        change = {"change": "removed", "key": _key_object(key), "fields": []}
        change.update(old=loads(record), new=None)
        write(dumps(change, option=orjson.OPT_APPEND_NEWLINE))
