"""Output files that appear whole or not at all, and what to tell the user when they cannot.

A file is written under a temporary name beside its destination and renamed over it only when the
run has ended (``commit``); a run that fails first leaves any earlier file untouched (``discard``).
``RunFiles`` is the transaction of one run: the records (a file, or stdout) and the summary, in that
order, each with one line that names the path, the problem and the fix when it cannot be saved.

Every file operation goes through a ``FileSystem``: ``OsFileSystem`` does them; tests pass one that
fails on demand (a full disk, an fsync that fails, a folder turned read-only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from scanner.errors import ConfigError

__all__ = [
    "OS_FILE_SYSTEM",
    "FileSystem",
    "OsFileSystem",
    "OutputFile",
    "RunFiles",
    "Saved",
    "check_writable",
    "records_error",
]


class FileSystem(Protocol):
    """The file operations an ``OutputFile`` makes, one method per system call."""

    def is_dir(self, path: Path) -> bool: ...
    def exists(self, path: Path) -> bool: ...
    def access(self, path: Path, mode: int) -> bool: ...
    def mkstemp(self, folder: Path, prefix: str, suffix: str) -> tuple[int, str]: ...
    def fdopen(self, fd: int, buffering: int) -> IO[bytes]: ...
    def fsync(self, fd: int) -> None: ...
    def umask(self) -> int: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def replace(self, source: str, target: Path) -> None: ...
    def unlink(self, path: str) -> None: ...


class OsFileSystem:
    """The real file system."""

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def access(self, path: Path, mode: int) -> bool:
        return os.access(path, mode)

    def mkstemp(self, folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)

    def fdopen(self, fd: int, buffering: int) -> IO[bytes]:
        return os.fdopen(fd, "wb", buffering=buffering)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def umask(self) -> int:
        mask = os.umask(0)
        os.umask(mask)
        return mask

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def replace(self, source: str, target: Path) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)


OS_FILE_SYSTEM: Final = OsFileSystem()


def check_writable(
    path: Path, *, what: str = "output", flag: str = "-o", fs: FileSystem = OS_FILE_SYSTEM
) -> None:
    """Fail early, before any request, if ``path`` cannot be written (or its folder is missing).

    ``what`` and ``flag`` name the file in the message (``"summary"``, ``"--summary"``).
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        is_dir = fs.is_dir(path)
    except OSError as exc:  # a name too long for the file system, a loop of links, ...
        raise ConfigError(
            f"{what} path {path} cannot be used ({exc.strerror or exc}): choose another {flag} path"
        ) from None
    if is_dir:
        raise ConfigError(f"{what} path {path} is a directory: give a file name")
    if not fs.is_dir(folder):
        raise ConfigError(f"{what} folder {folder} does not exist: create it or choose another {flag} path")
    if not fs.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {folder}: choose another {flag} path")
    if fs.exists(path) and not fs.access(path, os.W_OK):
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
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        self.path = path
        self._fs = fs
        self._temp_name: str | None = None
        if path is None:
            if stream is None:
                raise ValueError("OutputFile needs a path or a stream")
            self._file: IO[bytes] = stream
            return
        check_writable(path, what=what, flag=flag, fs=fs)
        # The temporary name adds 14 characters to a stem cut to 50 (at most 200 bytes), so every name
        # the file system takes (255 bytes) gets a temporary file beside it.
        fd, self._temp_name = fs.mkstemp(path.parent or Path("."), f".{path.name[:50]}.", ".tmp")
        self._file = fs.fdopen(fd, 1 << 20)

    def write(self, data: bytes) -> None:
        if data:
            self._file.write(data)

    def commit(self) -> None:
        """Make the output visible: flush, fsync and rename the temporary file over ``path``."""
        self._file.flush()
        if self._temp_name is None or self.path is None:
            return
        fs = self._fs
        fs.fsync(self._file.fileno())
        self._file.close()
        # mkstemp creates 0600 files; an inventory file should get the usual permissions.
        fs.chmod(self._temp_name, 0o666 & ~fs.umask())
        fs.replace(self._temp_name, self.path)
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
            self._fs.unlink(self._temp_name)
        except OSError:
            # A folder made read-only (as a file system is remounted after I/O errors): raising
            # would hide the error that led here; ``temp_name`` still names the file left behind.
            return
        self._temp_name = None

    @property
    def temp_name(self) -> str | None:
        """The temporary file: before ``commit``, or after a ``discard`` that could not remove it."""
        return self._temp_name


# --- the run's files, and what to say when they cannot be saved ---------------------------------

_WRITE_FIXES: Final = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EISDIR: "give a file name",
    errno.ENOENT: "create its folder",
}


def _fix(exc: OSError, flag: str) -> str:
    fix = _WRITE_FIXES.get(exc.errno or 0)
    return f"{fix} or choose another {flag} path" if fix else f"choose another {flag} path"


def records_error(path: Path | None, exc: OSError, consequence: str) -> str:
    """One line for records that could not be written, to stdout or to the -o file."""
    if path is None:
        if isinstance(exc, BrokenPipeError):
            return f"stdout was closed by its reader (broken pipe): {consequence}"
        return f"cannot write to stdout ({exc.strerror or exc}): {consequence}"
    return f"cannot write to {path} ({exc.strerror or exc}): {consequence}; {_fix(exc, '-o')}"


def _summary_error(
    path: Path, exc: OSError | ConfigError, *, records_written: bool, stuck: str | None
) -> str:
    if isinstance(exc, ConfigError):  # the up-front check, failing now: the folder went away, ...
        message = str(exc)
    else:
        message = f"cannot write the summary to {path} ({exc.strerror or exc}): {_fix(exc, '--summary')}"
    if stuck is not None:
        message += f"; its temporary file {stuck} could not be removed"
    return message + ("; the records were written, only the summary is missing" if records_written else "")


@dataclass(frozen=True, slots=True)
class Saved:
    """What became of the records at the end of the run."""

    #: The output holds them: the file was renamed into place, or stdout took the last of them.
    written: bool
    #: One line for the user when they were not saved or a temporary file was left behind.
    error: str | None = None


class RunFiles:
    """The files of one run: the records (``records``, a file or ``stdout``) and ``summary``.

    Opening makes the records' temporary file (a ``ConfigError`` that says why not: exit 2, before
    any request). ``save_records`` then commits or discards them, ``save_summary`` writes the summary
    beside its path and renames it into place; neither raises for a file that cannot be saved.
    """

    def __init__(
        self,
        records: Path | None,
        summary: Path | None,
        *,
        stdout: IO[bytes] | None = None,
        fs: FileSystem = OS_FILE_SYSTEM,
    ) -> None:
        self._summary_path = summary
        self._fs = fs
        self._summary: OutputFile | None = None
        try:
            self.records = OutputFile(records, stream=stdout, fs=fs)
        except OSError as exc:  # the temporary file beside -o: no space or no inode left, a quota, ...
            raise ConfigError(
                f"cannot write to {records} ({exc.strerror or exc}): {_fix(exc, '-o')}"
            ) from None

    def temp_names(self) -> list[str]:
        """The temporary files that exist now (for an exit that cannot wait for commit or discard)."""
        files = (self.records, self._summary)
        return [f.temp_name for f in files if f is not None and f.temp_name is not None]

    def save_records(self, *, commit: bool) -> Saved:
        """Commit the records (``commit``) or drop them (the run failed: the earlier file stays)."""
        records = self.records
        error: str | None = None
        written = commit
        if commit:
            try:
                records.commit()
            except OSError as exc:  # the last buffered records, the fsync or the rename: a full disk, EIO
                records.discard()
                written = False
                consequence = (
                    "the records were not saved" if records.path else "the last records were not written"
                )
                error = records_error(records.path, exc, consequence)
        else:
            records.discard()
        if records.temp_name is not None:  # discarded, but the folder would not let it go
            stuck = f"its temporary file {records.temp_name} could not be removed"
            error = f"{error}; {stuck}" if error else stuck
        return Saved(written, error)

    def save_summary(self, document: bytes, *, records_written: bool) -> str | None:
        """Write the summary (if the run has a path for it); the error line if it could not be."""
        path = self._summary_path
        if path is None:
            return None
        # Checked before the scan, but the folder can vanish or the disk fill up while it runs.
        # The records are already in place (or discarded): this failure must not touch them.
        try:
            self._summary = OutputFile(path, what="summary", flag="--summary", fs=self._fs)
            try:
                self._summary.write(document)
                self._summary.commit()
            except BaseException:
                self._summary.discard()
                raise
        except (OSError, ConfigError) as exc:
            stuck = self._summary.temp_name if self._summary is not None else None
            return _summary_error(path, exc, records_written=records_written, stuck=stuck)
        return None
