"""A scan directory: one part per (account, region), a manifest of entries, resume after any crash.

The manifest is a folder of entries, one small JSON file per (account, region) under
``_manifest/parts/``, not one ``manifest.json``. Why: several processes (the shards of one scan, the
workers of a Ray scan) commit parts into one directory at once. With one shared file each commit
would be a read-modify-write that needs a lock held across processes (and machines, on a shared
file system) and a crash mid-rewrite would risk every entry. With a file per unit, each commit
touches only its own file, written whole under a temporary name and renamed into place (atomic on
POSIX and on NFS), so writers never see or clobber each other's entries, and a reader lists the
folder and gets a consistent set: each entry is the old one or the new one, never a mix.

Commit protocol of a part (``PartWriter.commit``), so that at any instant -- SIGKILL, power loss, a
full disk -- every part an entry calls complete is whole and matches the entry's sha256:

1. records are written to ``.part-<n>.<ext>.<random>.tmp`` in the unit's folder, hashed as written;
2. the file is fsynced, renamed to ``part-<n>.<ext>``, and the folder fsynced;
3. the entry (status, failures, records, bytes, sha256, file) is written the same way (temporary name,
   fsync, rename, fsync the folder) over the unit's previous entry;
4. the part the previous entry named, if any, is removed.

A crash before 3 leaves a temporary file or a part no entry names (a leftover: never read, removed by
the next ``resume_plan`` or by the next writer of that unit); a crash after 3 leaves at most the old
part (also a leftover). A writer holds an exclusive ``flock`` on ``_manifest/locks/<unit>.lock`` from
opening a part to its commit, so two processes never write one unit at once (the second gets
``PartBusyError``), and cleaning up never touches a unit a live process is writing: the lock dies with
its process, even by SIGKILL. A region with no instances gets an entry and no file.

Event loop: records are encoded and written on the caller's thread (a page is a few hundred KB, and
writes go to the page cache in 1 MB chunks); Parquet pages are encoded in a worker thread (converting
a few thousand rows at a time takes tens of ms). Opening a part and its commit (two fsyncs of files,
two of folders, two renames: 30-45 ms measured on this project's VM disk, more on a network file
system) run in a worker thread too.

Cancellation: a step in a worker thread (opening, encoding a Parquet page, the commit) that has
started is waited for, whatever cancels the caller, anyio's cancellation or asyncio's own
(``Task.cancel()``, ``asyncio.timeout()``, Ctrl-C under ``asyncio.run()``, which go through anyio's
shields; see ``scanner.scandir.threads``); the cancellation is raised once it has ended. So a commit
cancelled once started still ends whole, the unit committed (``PartWriter.entry``), and one
cancelled before it started never starts: the part is discarded and the unit's previous entry
stands. The writer never discards, unlocks or writes on while its own thread works on the part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import orjson

from scanner.clock import Clock, SystemClock
from scanner.errors import ConfigError, ScannerError, UsageError
from scanner.scandir.formats import PartEncoder, part_encoder
from scanner.scandir.fs import FileSystem, OsFileSystem, atomic_write, is_temp_name, temp_name
from scanner.scandir.layout import (
    LOCKS,
    MANIFEST,
    PARTS,
    RUNS,
    SCAN_FILE,
    Unit,
    part_name,
    part_number,
    unit_folders,
    unit_from_key,
)
from scanner.scandir.params import ScanParams
from scanner.scandir.threads import run_to_end

__all__ = [
    "PartBusyError",
    "PartEntry",
    "PartStatus",
    "PartWriter",
    "ResumePlan",
    "ScanDirectory",
    "combined_status",
    "merged_entries",
    "status_table",
]

PartStatus = Literal["complete", "incomplete"]

_EXTENSIONS: Final = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}
_FLUSH_BYTES: Final = 1 << 20
#: Temporary files of the manifest itself (scan.json, run files) older than this are leftovers.
_STALE_MANIFEST_TEMP_S: Final = 3600.0
_VERSION: Final = 1
#: How long opening a part waits for a unit's lock held by another process's clean-up.
_LOCK_WAIT_S: Final = 2.0


class PartBusyError(ScannerError):
    """Another live process is writing this (account, region) into the same scan directory."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


@dataclass(frozen=True, slots=True)
class PartEntry:
    """The manifest entry of one (account, region)."""

    unit: Unit
    status: PartStatus
    failures: tuple[Mapping[str, Any], ...]
    records: int
    bytes: int
    sha256: str | None
    #: The part file, relative to the scan directory (``None``: no records, no file).
    file: str | None
    format: str
    started_at: str
    finished_at: str
    run_id: str

    @property
    def account(self) -> str | None:
        return self.unit.account

    @property
    def region(self) -> str:
        return self.unit.region

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "account": self.unit.account,
            "region": self.unit.region,
            "status": self.status,
            "failures": [dict(failure) for failure in self.failures],
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "file": self.file,
            "format": self.format,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "run_id": self.run_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartEntry:
        return cls(
            unit=Unit(data["account"], data["region"]),
            status=data["status"],
            failures=tuple(data.get("failures") or ()),
            records=int(data["records"]),
            bytes=int(data["bytes"]),
            sha256=data.get("sha256"),
            file=data.get("file"),
            format=data["format"],
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at", ""),
            run_id=data.get("run_id", ""),
        )


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a resumed run keeps and what it scans (``ScanDirectory.resume_plan``)."""

    #: Units whose part is complete: kept, not scanned again.
    complete: frozenset[Unit]
    #: Units whose entry says incomplete: scanned again (their part is replaced on commit).
    incomplete: frozenset[Unit]
    #: Units an earlier run expected that have no entry: scanned.
    missing: frozenset[Unit]
    #: Units another live process is writing right now: left alone.
    busy: frozenset[Unit]
    #: Leftovers of interrupted runs that were removed (paths relative to the directory).
    removed: tuple[str, ...]
    #: Records in the complete parts.
    records: int = 0
    #: Units whose entry says complete but whose part is missing or not of the entry's size (removed
    #: by hand, or by a writer an asyncio cancellation cut in two before this was fixed): among
    #: ``incomplete``, scanned again. Only the units this process cleaned (``owns``) are checked.
    damaged: frozenset[Unit] = frozenset()

    @property
    def to_scan(self) -> frozenset[Unit]:
        """The units known to need scanning (a unit discovered later needs it too if not ``complete``)."""
        return self.incomplete | self.missing

    def should_scan(self, account: str | None, region: str) -> bool:
        unit = Unit(account, region)
        return unit not in self.complete and unit not in self.busy


@dataclass(slots=True)
class _Run:
    run_id: str
    started_at: str
    finished_at: str | None = None
    expected: list[Unit] | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "expected": None if self.expected is None else [unit.to_json() for unit in self.expected],
            "host": self.host,
            "pid": self.pid,
        }


class ScanDirectory:
    """A scan directory (see the module docstring). Build with ``create_or_open`` or ``open``."""

    def __init__(
        self,
        path: Path,
        params: ScanParams,
        *,
        created_at: str,
        fs: FileSystem,
        clock: Clock,
        run_id: str,
    ) -> None:
        self.path = path
        self.params = params
        self.created_at = created_at
        self._fs = fs
        self._clock = clock
        self._run = _Run(run_id=run_id, started_at=_iso(clock.wall()))
        self._run_written = False

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def create_or_open(
        cls,
        path: str | Path,
        params: ScanParams,
        *,
        fs: FileSystem | None = None,
        clock: Clock | None = None,
        run_id: str | None = None,
    ) -> ScanDirectory:
        """Create the scan directory ``path`` for ``params``, or join the scan already in it.

        Several processes may call this at once with the same parameters: one creates
        ``_manifest/scan.json`` and the others find it. A directory of another scan (other
        parameters), or a non-empty folder that is not a scan directory, is refused with a
        ``ConfigError`` naming the difference.
        """
        fs = fs or OsFileSystem()
        clock = clock or SystemClock()
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"output directory {root} is a file: give a directory")
        scan_file = root / SCAN_FILE
        if not scan_file.exists() and root.is_dir():
            strays = sorted(child.name for child in root.iterdir() if child.name != MANIFEST)
            if strays:
                raise ConfigError(
                    f"{root} is not empty and is not a scan directory (it holds {strays[0]!r}): "
                    "give a new or empty directory"
                )
        try:
            for folder in (root, root / MANIFEST, root / PARTS, root / RUNS, root / LOCKS):
                fs.makedirs(folder)
        except OSError as exc:
            raise ConfigError(f"cannot create the scan directory {root}: {exc.strerror or exc}") from None
        created_at = _iso(clock.wall())
        document = {"version": _VERSION, "created_at": created_at, "params": params.to_json()}
        if not atomic_write(fs, scan_file, _dumps(document), exclusive=True):
            existing = cls._read_scan_file(root)
            created_at = existing["created_at"]
            there = ScanParams.from_json(existing["params"])
            differences = params.differences(there)
            if differences:
                raise ConfigError(
                    f"{root} holds a scan with other parameters ({'; '.join(differences)}, here vs there): "
                    "use the same parameters to resume it, or another directory"
                )
        return cls(
            root, params, created_at=created_at, fs=fs, clock=clock, run_id=run_id or secrets.token_hex(8)
        )

    @classmethod
    def open(
        cls, path: str | Path, *, fs: FileSystem | None = None, clock: Clock | None = None
    ) -> ScanDirectory:
        """Open an existing scan directory to read it (status, diff, verify)."""
        root = Path(path)
        document = cls._read_scan_file(root)
        return cls(
            root,
            ScanParams.from_json(document["params"]),
            created_at=document["created_at"],
            fs=fs or OsFileSystem(),
            clock=clock or SystemClock(),
            run_id=secrets.token_hex(8),
        )

    @staticmethod
    def _read_scan_file(root: Path) -> dict[str, Any]:
        scan_file = root / SCAN_FILE
        try:
            document: dict[str, Any] = orjson.loads(scan_file.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{root} is not a scan directory (no {SCAN_FILE})") from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {scan_file}: {exc}") from None
        return document

    # --- reading ---------------------------------------------------------------------------------

    def unit(self, account: str | None, region: str) -> Unit:
        """The unit of (account, region), checked against the directory's layout."""
        if self.params.multi_account and account is None:
            raise UsageError(f"{self.path} holds a multi-account scan: a part needs its account")
        if not self.params.multi_account and account is not None:
            raise UsageError(f"{self.path} holds a single-account scan: a part has no account")
        unit = Unit(account, region)
        unit.folder  # noqa: B018  (validates the names)
        return unit

    def entries(self) -> dict[Unit, PartEntry]:
        """Every committed entry, by unit."""
        entries: dict[Unit, PartEntry] = {}
        folder = self.path / PARTS
        if not folder.is_dir():  # a manifest folder removed by hand: no entries
            return entries
        for child in sorted(folder.iterdir()):
            name = child.name
            if is_temp_name(name) or not name.endswith(".json"):
                continue
            entry = self._read_entry(child)
            if entry is not None:
                entries[entry.unit] = entry
        return entries

    def entry(self, unit: Unit) -> PartEntry | None:
        return self._read_entry(self._entry_path(unit))

    def _read_entry(self, path: Path) -> PartEntry | None:
        try:
            return PartEntry.from_json(orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the manifest entry {path}: {exc}") from None

    def _entry_path(self, unit: Unit) -> Path:
        return self.path / PARTS / f"{unit.key}.json"

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        for child in sorted((self.path / RUNS).glob("*.json")):
            if not is_temp_name(child.name):
                with contextlib.suppress(OSError, ValueError):
                    runs.append(orjson.loads(child.read_bytes()))
        return runs

    def expected(self) -> set[Unit] | None:
        """The units the runs expected (their union), or None when no run recorded them."""
        expected: set[Unit] | None = None
        for run in self.runs():
            units = run.get("expected")
            if units is not None:
                expected = expected or set()
                expected.update(Unit(unit["account"], unit["region"]) for unit in units)
        return expected

    def status(self) -> dict[str, Any]:
        """``{"complete", "records", "parts": [...], "missing": [...] | None, ...}`` (see the README)."""
        return combined_status([self])

    def verify(self) -> list[str]:
        """Problems found by re-reading every part an entry names (empty: the directory is sound)."""
        problems: list[str] = []
        for unit, entry in sorted(self.entries().items(), key=lambda item: _sort_key(item[0])):
            if entry.file is None:
                if entry.records:
                    problems.append(f"{unit}: {entry.records} records but no file")
                continue
            path = self.path / entry.file
            try:
                digest, size = _hash_file(path)
            except OSError as exc:
                problems.append(f"{unit}: {entry.file}: {exc.strerror or exc}")
                continue
            if size != entry.bytes or digest != entry.sha256:
                problems.append(f"{unit}: {entry.file} does not match its entry (bytes or sha256)")
        return problems

    # --- writing ---------------------------------------------------------------------------------

    def part(self, account: str | None, region: str) -> PartWriter:
        """The writer of (account, region)'s part: ``async with dir.part(a, r) as part: ...``."""
        return PartWriter(self, self.unit(account, region))

    def expect(self, units: Iterable[tuple[str | None, str]]) -> None:
        """Record the units this run will scan (all of them, not just a shard's), for ``status``."""
        self._run.expected = sorted({self.unit(account, region) for account, region in units}, key=_sort_key)
        self._write_run()

    def finish_run(self) -> None:
        """Record that this run ended (its time becomes the scan's end in ``status``)."""
        self._run.finished_at = _iso(self._clock.wall())
        self._write_run()

    def _write_run(self) -> None:
        path = self.path / RUNS / f"{self._run.run_id}.json"
        atomic_write(self._fs, path, _dumps(self._run.to_json()))

    def resume_plan(self, params: ScanParams, *, owns: Callable[[Unit], bool] | None = None) -> ResumePlan:
        """Check ``params``, remove leftovers of interrupted runs, and say which units to keep and scan.

        ``ConfigError`` (naming each difference) when ``params`` differ from the directory's. Units
        another live process is writing are left alone (``busy``). ``owns``: the units this process
        will write (a shard's); only their leftovers are removed (the other shards clean their own).
        A complete entry whose part is missing or not of its size is ``damaged``: scanned again.
        """
        differences = params.differences(self.params)
        if differences:
            raise ConfigError(
                f"cannot resume {self.path}: the scan's parameters differ ({'; '.join(differences)}, "
                "now vs in the directory): run with the same parameters, or scan into another directory"
            )
        fs = self._fs
        removed: list[str] = []
        busy: set[Unit] = set()
        damaged: set[Unit] = set()
        units = set(self.entries()) | set(unit_folders(self.path))
        for child in (self.path / PARTS).iterdir():
            if is_temp_name(child.name):
                unit = unit_from_key(child.name[1:].split(".json.", 1)[0])
                if unit is not None:
                    units.add(unit)
        for unit in sorted(units, key=_sort_key):
            if owns is not None and not owns(unit):
                continue
            lock = fs.lock(self._lock_path(unit))
            if lock is None:
                busy.add(unit)
                continue
            try:
                removed.extend(self._clean_unit(unit))
                if not self._part_present(unit):  # checked under the lock: no writer replaces it now
                    damaged.add(unit)
            finally:
                fs.unlock(lock)
        removed.extend(self._clean_manifest_temps())
        entries = self.entries()
        complete = {unit for unit, entry in entries.items() if entry.status == "complete"} - busy - damaged
        incomplete = (
            {unit for unit, entry in entries.items() if entry.status != "complete"} - busy
        ) | damaged
        expected = self.expected() or set()
        return ResumePlan(
            complete=frozenset(complete),
            incomplete=frozenset(incomplete),
            missing=frozenset(expected - set(entries) - busy),
            busy=frozenset(busy),
            removed=tuple(removed),
            records=sum(entries[unit].records for unit in complete),
            damaged=frozenset(damaged),
        )

    def _part_present(self, unit: Unit) -> bool:
        """False when the unit's entry says complete and its part is missing or not of its size."""
        return _part_intact(self.path, self.entry(unit))

    def _lock_path(self, unit: Unit) -> Path:
        return self.path / LOCKS / f"{unit.key}.lock"

    def _clean_unit(self, unit: Unit) -> list[str]:
        """Remove a unit's leftovers (its lock held): temp files, parts its entry does not name."""
        fs = self._fs
        removed: list[str] = []
        entry = self.entry(unit)
        keep = entry.file if entry is not None else None
        folder = self.path / unit.folder
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                relative = f"{unit.folder}/{child.name}"
                if is_temp_name(child.name) or (part_number(child.name) is not None and relative != keep):
                    fs.unlink(child)
                    removed.append(relative)
            if entry is None:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # an empty folder of a unit never committed
        prefix = f".{unit.key}.json."
        for child in sorted((self.path / PARTS).iterdir()):
            if child.name.startswith(prefix) and is_temp_name(child.name):
                fs.unlink(child)
                removed.append(f"{PARTS}/{child.name}")
        return removed

    def _clean_manifest_temps(self) -> list[str]:
        removed: list[str] = []
        now = time.time()
        for folder in (self.path / MANIFEST, self.path / RUNS):
            for child in sorted(folder.iterdir()):
                if not is_temp_name(child.name):
                    continue
                with contextlib.suppress(OSError):
                    if now - child.stat().st_mtime > _STALE_MANIFEST_TEMP_S:
                        self._fs.unlink(child)
                        removed.append(str(child.relative_to(self.path)))
        return removed


def _sort_key(unit: Unit) -> tuple[str, str]:
    return (unit.account or "", unit.region)


def _better(a: PartEntry, b: PartEntry) -> PartEntry:
    """Of two entries of one unit (in two directories): the complete one, else the later one."""
    if (a.status == "complete") != (b.status == "complete"):
        return a if a.status == "complete" else b
    return a if a.finished_at >= b.finished_at else b


def merged_entries(directories: Sequence[ScanDirectory]) -> dict[Unit, tuple[ScanDirectory, PartEntry]]:
    """The entries of one scan written into several directories (one per shard, say), by unit.

    The directories must hold the same scan (``ConfigError`` naming the difference otherwise). A unit
    found in several takes its complete entry, or else its latest one.
    """
    if not directories:
        raise ConfigError("no scan directory given")
    first = directories[0]
    merged: dict[Unit, tuple[ScanDirectory, PartEntry]] = {}
    for directory in directories:
        differences = directory.params.differences(first.params)
        if differences:
            raise ConfigError(
                f"{directory.path} and {first.path} hold different scans ({'; '.join(differences)})"
            )
        for unit, entry in directory.entries().items():
            found = merged.get(unit)
            if found is None or _better(found[1], entry) is entry:
                merged[unit] = (directory, entry)
    return merged


def combined_status(directories: Sequence[ScanDirectory]) -> dict[str, Any]:
    """The status of one scan in one directory, or spread over several (shards); see ``status()``."""
    merged = merged_entries(directories)
    entries = {unit: entry for unit, (_, entry) in merged.items()}
    damaged = sorted(
        (unit for unit, (directory, entry) in merged.items() if not _still_intact(directory, unit, entry)),
        key=_sort_key,
    )
    expected: set[Unit] | None = None
    finished: list[str] = []
    for directory in directories:
        units = directory.expected()
        if units is not None:
            expected = (expected or set()) | units
        finished.extend(run["finished_at"] for run in directory.runs() if run.get("finished_at"))
    parts = [
        {
            "account": entry.account,
            "region": entry.region,
            "status": entry.status,
            "records": entry.records,
            "failures": [dict(failure) for failure in entry.failures],
        }
        for unit, entry in sorted(entries.items(), key=lambda item: _sort_key(item[0]))
    ]
    missing = None if expected is None else sorted(expected - set(entries), key=_sort_key)
    all_complete = all(entry.status == "complete" for entry in entries.values())
    complete = all_complete and not damaged and (not missing if missing is not None else bool(entries))
    return {
        "complete": complete,
        "records": sum(entry.records for entry in entries.values()),
        "parts": parts,
        "missing": None if missing is None else [unit.to_json() for unit in missing],
        "damaged": [{**unit.to_json(), "file": entries[unit].file} for unit in damaged],
        "started_at": min(directory.created_at for directory in directories),
        "finished_at": max(finished) if finished else None,
        "params": directories[0].params.to_json(),
    }


def _part_intact(root: Path, entry: PartEntry | None) -> bool:
    """False when ``entry`` says complete and its part is missing or not of its size (a stat, not
    a re-read: ``verify`` re-reads)."""
    if entry is None or entry.status != "complete" or entry.file is None:
        return True
    try:
        return (root / entry.file).stat().st_size == entry.bytes
    except FileNotFoundError:
        return False


def _still_intact(directory: ScanDirectory, unit: Unit, entry: PartEntry) -> bool:
    """``_part_intact``, asked again of the unit's current entry when the first answer is no: a
    live writer may have replaced the part (and removed the old file) since the entry was read."""
    return _part_intact(directory.path, entry) or _part_intact(directory.path, directory.entry(unit))


def status_table(status: Mapping[str, Any]) -> list[str]:
    """``ScanDirectory.status()`` as the lines of a plain-text table (``eas-scan status DIR``)."""
    rows = [("account", "region", "status", "records", "failures")]
    damaged = {(unit["account"], unit["region"]): unit["file"] for unit in status.get("damaged") or ()}
    for part in status["parts"]:
        failures = "; ".join(f"{f.get('service') or '-'}: {f.get('code')}" for f in part["failures"])
        state = part["status"]
        file = damaged.get((part["account"], part["region"]))
        if file is not None:
            state = "damaged"
            failures = f"{file} is missing or not of its entry's size: --resume scans it again"
        rows.append((part["account"] or "-", part["region"], state, str(part["records"]), failures))
    for unit in status.get("missing") or ():
        rows.append((unit["account"] or "-", unit["region"], "missing", "0", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    parts = status["parts"]
    broken = len(damaged)
    complete = sum(1 for part in parts if part["status"] == "complete") - broken
    missing = len(status.get("missing") or ())
    lines.append(
        f"{complete} complete, {len(parts) - complete - broken} incomplete, "
        + (f"{broken} damaged, " if broken else "")
        + f"{missing} missing; "
        f"{status['records']} records; " + ("complete" if status["complete"] else "NOT complete")
    )
    return [line.rstrip() for line in lines]


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class PartWriter:
    """Writes one (account, region)'s part; ``commit`` makes it and its entry visible atomically.

    ::

        async with directory.part(account, region) as part:
            await part.write(page)                         # as many times as there are pages
            await part.commit("complete")                  # or ("incomplete", failures)

    Leaving the block without ``commit`` (an error, a cancellation) discards the part: the unit's
    previous entry and part, if any, stay as they were. A commit cancelled once it has started ends
    first (see the module docstring): ``entry`` is then the committed entry, and the part is kept.
    """

    def __init__(self, directory: ScanDirectory, unit: Unit) -> None:
        self._dir = directory
        self._fs = directory._fs
        self.unit = unit
        self.records = 0
        self.bytes = 0
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._encoder: PartEncoder | None = None
        self._lock: int | None = None
        self._fd: int | None = None
        self._temp: Path | None = None
        self._final: Path | None = None
        self._previous: PartEntry | None = None
        self._started_at = ""
        #: The unit's entry once ``commit`` has made it visible (even if the caller was then cancelled).
        self.entry: PartEntry | None = None
        self._state: Literal["new", "opening", "open", "committed", "closed"] = "new"
        self._threaded = directory.params.format == "parquet"

    async def __aenter__(self) -> PartWriter:
        if self._state != "new":
            raise UsageError("a PartWriter can be entered once")
        self._state = "opening"
        try:
            # Cleaning the unit's folder, creating it and fsyncing its parents: off the event loop.
            await run_to_end(self._open_sync)
        except BaseException:  # raised once the thread has ended (or when it never started)
            self._discard()
            self._release()
            self._state = "closed"
            raise
        return self

    def _open_sync(self) -> None:
        fs, directory, unit = self._fs, self._dir, self.unit
        # Another process's resume_plan holds a unit's lock for the moment it cleans it: wait that out.
        # A writer holds it for a whole listing: still held after the wait, the unit is busy.
        deadline = time.monotonic() + _LOCK_WAIT_S
        while (lock := fs.lock(directory._lock_path(unit))) is None:
            if time.monotonic() > deadline:
                raise PartBusyError(f"{unit} is being written into {directory.path} by another process")
            time.sleep(0.01)  # a worker thread: the event loop goes on
        self._lock = lock
        directory._clean_unit(unit)
        self._previous = directory.entry(unit)
        folder = directory.path / unit.folder
        for made in fs.makedirs(folder):
            fs.fsync_dir(made.parent)
        numbers = [n for child in folder.iterdir() if (n := part_number(child.name)) is not None]
        name = part_name(max(numbers, default=-1) + 1, _EXTENSIONS[directory.params.format])
        self._final = folder / name
        self._temp = folder / temp_name(name)
        self._fd = fs.create(self._temp)
        self._encoder = part_encoder(
            directory.params.format, account_column=directory.params.accounts is not None
        )
        self._started_at = _iso(directory._clock.wall())
        self._emit(self._encoder.header())
        self._state = "open"

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state != "committed":
            self._discard()
        self._state = "closed"
        self._release()

    async def write(self, records: list[dict[str, Any]]) -> None:
        """Append a page of records."""
        encoder = self._check_open()
        if not records:
            return
        if self._threaded:
            # The page is in the part whole, or not at all: the encoder keeps state (Parquet's footer
            # names every row group), so its output is never dropped, even by a cancelled caller.
            await run_to_end(self._write_sync, encoder, records)
        else:
            self._write_sync(encoder, records)

    def _write_sync(self, encoder: PartEncoder, records: list[dict[str, Any]]) -> None:
        data = encoder.encode(records)
        self.records += len(records)
        self._emit(data)

    async def commit(
        self, status: PartStatus = "complete", failures: Sequence[Mapping[str, Any]] = ()
    ) -> PartEntry:
        """Make the part and its entry visible, whole (see the module docstring for the steps)."""
        encoder = self._check_open()
        if status not in ("complete", "incomplete"):
            raise UsageError(f"a part's status is 'complete' or 'incomplete', not {status!r}")
        if status == "complete" and failures:
            raise UsageError("a complete part has no failures: commit it as 'incomplete'")
        failures = tuple(dict(failure) for failure in failures)
        return await run_to_end(self._commit_sync, encoder, status, failures)

    def _check_open(self) -> PartEncoder:
        if self._state != "open" or self._encoder is None:
            raise UsageError(f"the part of {self.unit} is not open (state: {self._state})")
        return self._encoder

    def _emit(self, data: bytes) -> None:
        if data:
            self._buffer += data
            if len(self._buffer) >= _FLUSH_BYTES:
                self._flush()

    def _flush(self) -> None:
        if self._buffer and self._fd is not None:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._fs.write(self._fd, data)
            self._digest.update(data)
            self.bytes += len(data)

    def _commit_sync(
        self, encoder: PartEncoder, status: PartStatus, failures: tuple[Mapping[str, Any], ...]
    ) -> PartEntry:
        fs, directory, unit = self._fs, self._dir, self.unit
        self._emit(encoder.finish())
        self._flush()
        assert self._fd is not None
        assert self._temp is not None
        assert self._final is not None
        fd, self._fd = self._fd, None
        file: str | None = None
        if self.records:
            try:
                fs.fsync(fd)
            finally:
                fs.close(fd)
            fs.rename(self._temp, self._final)
            self._temp = None
            fs.fsync_dir(self._final.parent)
            file = f"{unit.folder}/{self._final.name}"
        else:  # a region with no instances: an entry, no file
            fs.close(fd)
            fs.unlink(self._temp)
            self._temp = None
            self._final = None
        entry = PartEntry(
            unit=unit,
            status=status,
            failures=failures,
            records=self.records,
            bytes=self.bytes if file else 0,
            sha256=self._digest.hexdigest() if file else None,
            file=file,
            format=directory.params.format,
            started_at=self._started_at,
            finished_at=_iso(directory._clock.wall()),
            run_id=directory._run.run_id,
        )
        atomic_write(fs, directory._entry_path(unit), _dumps(entry.to_json()))
        self._final = None  # named by the entry now: never removed by a discard
        self.entry = entry
        self._state = "committed"  # here, not in the caller: a cancelled caller does not get here
        previous = self._previous
        if previous is not None and previous.file is not None and previous.file != file:
            with contextlib.suppress(OSError):
                fs.unlink(directory.path / previous.file)
        return entry

    def _discard(self) -> None:
        """Remove what this writer left (temp file, a part renamed but never named by an entry)."""
        fs = self._fs
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fs.close(self._fd)
            self._fd = None
        for path in (self._temp, self._final if self._temp is None else None):
            if path is not None:
                with contextlib.suppress(OSError):
                    fs.unlink(path)
        self._temp = self._final = None

    def _release(self) -> None:
        if self._lock is not None:
            self._fs.unlock(self._lock)
            self._lock = None
