"""A file system that fails on demand, for the code that writes files (``scanner.output.files``).

It does every operation on the real file system (under the test's ``tmp_path``) unless told to fail::

    fs = FaultyFileSystem()
    fs.fail("fsync", errno.EIO, call=1)      # the first fsync fails, the next ones work
    fs.fail("unlink", errno.EROFS)           # every unlink fails (a folder remounted read-only)
    fs.full_disk = {1}                       # the first file opened: every flush fails with ENOSPC
    fs.before("fsync", change)               # run change() just before the first fsync
    fs.read_only = {folder}                  # access() says no (tests may run as root)

Files are numbered in the order they are opened: in a run, 1 is the records' (-o), 2 the summary's.
"""

from __future__ import annotations

import errno
import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from scanner.output.files import OsFileSystem


class _FullDisk(io.FileIO):
    def write(self, data: Any, /) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FaultyFileSystem(OsFileSystem):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.full_disk: set[int] = set()
        self.read_only: set[Path] = set()
        self._failures: dict[str, tuple[int, int | None]] = {}
        self._before: dict[str, tuple[Callable[[], object], int]] = {}

    def fail(self, operation: str, code: int, *, call: int | None = None) -> None:
        """``operation`` raises ``OSError(code)`` at its ``call``-th call (every call if None)."""
        self._failures[operation] = (code, call)

    def before(self, operation: str, change: Callable[[], object], *, call: int = 1) -> None:
        """Run ``change`` just before the ``call``-th ``operation`` (the world changing meanwhile)."""
        self._before[operation] = (change, call)

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        count = self.calls[operation]
        change = self._before.get(operation)
        if change is not None and change[1] == count:
            change[0]()
        failure = self._failures.get(operation)
        if failure is not None and failure[1] in (None, count):
            raise OSError(failure[0], os.strerror(failure[0]))

    def access(self, path: Path, mode: int) -> bool:
        self._enter("access")
        return Path(path) not in self.read_only and super().access(path, mode)

    def mkstemp(self, folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
        self._enter("mkstemp")
        return super().mkstemp(folder, prefix, suffix)

    def fdopen(self, fd: int, buffering: int) -> IO[bytes]:
        self._enter("fdopen")
        if self.calls["fdopen"] in self.full_disk:
            # A buffered writer on the real fd: writes fill its buffer, and every flush fails.
            return io.BufferedWriter(_FullDisk(fd, "wb"), buffering)
        return super().fdopen(fd, buffering)

    def fsync(self, fd: int) -> None:
        self._enter("fsync")
        super().fsync(fd)

    def chmod(self, path: str, mode: int) -> None:
        self._enter("chmod")
        super().chmod(path, mode)

    def replace(self, source: str, target: Path) -> None:
        self._enter("replace")
        super().replace(source, target)

    def unlink(self, path: str) -> None:
        self._enter("unlink")
        super().unlink(path)
