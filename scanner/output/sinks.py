"""Where records go: JSON Lines or CSV, to stdout or to a file that appears whole or not at all.

A file is written under a temporary name beside its destination and renamed over it only when the
scan has ended (``commit``); a run that dies first leaves any earlier file untouched. Records are
written a page at a time and each page ends on a line boundary, so a line is never cut in half.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol

import orjson

from scanner.eas.params import INSTANCE_FIELDS
from scanner.errors import ConfigError
from scanner.records import encode_jsonl

__all__ = [
    "CSV_COLUMNS",
    "CsvEncoder",
    "JsonlEncoder",
    "OutputFile",
    "RecordEncoder",
    "check_writable",
    "encoder_for",
]

#: CSV columns: where the instance lives, then every Instance field of the API.
CSV_COLUMNS: Final[tuple[str, ...]] = ("ClusterId", "ServiceName", *INSTANCE_FIELDS)

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


def encoder_for(fmt: str) -> RecordEncoder:
    if fmt == "jsonl":
        return JsonlEncoder()
    if fmt == "csv":
        return CsvEncoder()
    raise ConfigError(f"unknown output format {fmt!r}: use jsonl or csv")


def check_writable(path: Path, *, what: str = "output", flag: str = "-o") -> None:
    """Fail early, before any request, if ``path`` cannot be written (or its folder is missing).

    ``what`` and ``flag`` name the file in the message (``"summary"``, ``"--summary"``).
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long for the file system, a loop of links, ...
        raise ConfigError(
            f"{what} path {path} cannot be used ({exc.strerror or exc}): choose another {flag} path"
        ) from None
    if is_dir:
        raise ConfigError(f"{what} path {path} is a directory: give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{what} folder {folder} does not exist: create it or choose another {flag} path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {folder}: choose another {flag} path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{path} exists and is not writable: choose another {flag} path")


class OutputFile:
    """A binary output that becomes ``path`` only on ``commit``; ``discard`` leaves ``path`` alone.

    With ``path=None`` it writes straight to ``stream`` (stdout), where commit just flushes.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        stream: IO[bytes] | None = None,
        what: str = "output",
        flag: str = "-o",
    ) -> None:
        self.path = path
        self._temp_name: str | None = None
        if path is None:
            if stream is None:
                raise ValueError("OutputFile needs a path or a stream")
            self._file: IO[bytes] = stream
            return
        check_writable(path, what=what, flag=flag)
        # The temporary name adds 14 characters to a stem cut to 50 (at most 200 bytes), so every name
        # the file system takes (255 bytes) gets a temporary file beside it.
        fd, self._temp_name = tempfile.mkstemp(
            prefix=f".{path.name[:50]}.", suffix=".tmp", dir=path.parent or "."
        )
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        if data:
            self._file.write(data)

    def commit(self) -> None:
        """Make the output visible: flush, fsync and rename the temporary file over ``path``."""
        self._file.flush()
        if self._temp_name is None or self.path is None:
            return
        os.fsync(self._file.fileno())
        self._file.close()
        # mkstemp creates 0600 files; an inventory file should get the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._temp_name, 0o666 & ~umask)
        os.replace(self._temp_name, self.path)
        self._temp_name = None

    def discard(self) -> None:
        """Drop what was written; an existing file at ``path`` stays as it was."""
        if self._temp_name is None:
            # stdout: keep what reached it; a reader that went away (broken pipe) is not our error.
            with contextlib.suppress(OSError, ValueError):
                self._file.flush()
            return
        # Closing flushes what is still buffered; on a full disk that fails again, but the file is
        # closed all the same, and the temporary file must not be left behind.
        with contextlib.suppress(OSError):
            self._file.close()
        try:
            Path(self._temp_name).unlink(missing_ok=True)
        except OSError:
            # A folder made read-only (as a file system is remounted after I/O errors): raising
            # would hide the error that led here; ``temp_name`` still names the file left behind.
            return
        self._temp_name = None

    @property
    def temp_name(self) -> str | None:
        """The temporary file: before ``commit``, or after a ``discard`` that could not remove it."""
        return self._temp_name
