"""The file-system operations a scan directory uses, in one replaceable object (the test seam).

Every write of a scan directory goes through a ``FileSystem``: tests pass one that fails with
ENOSPC on the Nth write, or that stops the process at a chosen step of a commit, and check that the
directory is still consistent afterwards. ``OsFileSystem`` is the real one (``os``, ``fcntl``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from pathlib import Path

__all__ = ["FileSystem", "OsFileSystem", "atomic_write", "is_temp_name", "temp_name"]

_TEMP_SUFFIX = ".tmp"


def temp_name(final_name: str) -> str:
    """A temporary name for ``final_name`` in the same folder: hidden (readers skip it) and unique."""
    return f".{final_name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


class FileSystem:
    """The OS calls a scan directory makes. Subclass and override one to inject a fault."""

    def create(self, path: Path) -> int:
        """Create a new file (never an existing one) for writing; its descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, source: Path, target: Path) -> None:
        """Atomically replace ``target`` by ``source`` (same folder)."""
        os.replace(source, target)

    def link(self, source: Path, target: Path) -> None:
        """Give ``source`` a second name ``target``; FileExistsError if ``target`` exists."""
        os.link(source, target)

    def fsync_dir(self, path: Path) -> None:
        """Make a folder's entries (a rename, a new file) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def makedirs(self, path: Path) -> list[Path]:
        """Create ``path`` and its missing parents; the folders it created, outermost first."""
        created: list[Path] = []
        for folder in (*reversed(path.parents), path):
            if not folder.exists():
                try:
                    folder.mkdir()
                except FileExistsError:
                    continue
                created.append(folder)
        return created

    def lock(self, path: Path) -> int | None:
        """Take an exclusive lock on ``path`` (created if missing) without waiting; None if held.

        The lock belongs to the process (``flock``) and ends when it exits, even by SIGKILL.
        """
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return fd

    def unlock(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class OsFileSystem(FileSystem):
    """The real file system (``FileSystem``'s defaults), named for readability at call sites."""


def atomic_write(fs: FileSystem, path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` whole or not at all: temporary file, fsync, rename, fsync folder.

    With ``exclusive``, an existing ``path`` is left alone and False is returned (``link``, not
    ``rename``, puts the file in place).
    """
    temp = path.with_name(temp_name(path.name))
    fd = fs.create(temp)
    try:
        try:
            fs.write(fd, data)
            fs.fsync(fd)
        finally:
            fs.close(fd)
        if exclusive:
            try:
                fs.link(temp, path)
            except FileExistsError:
                return False
            finally:
                fs.unlink(temp)
        else:
            fs.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.unlink(temp)
        raise
    fs.fsync_dir(path.parent)
    return True
