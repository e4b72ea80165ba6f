"""A full disk, for the code that writes files: stands in for ``os.fdopen`` (``monkeypatch``)."""

from __future__ import annotations

import errno
import io
import os
from typing import Any


class _FullDisk(io.FileIO):
    def write(self, data: Any, /) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fdopen_on_full_disk(fd: int, mode: str = "wb", buffering: int = -1) -> io.BufferedWriter:
    """A buffered writer on ``fd``: writes fill its buffer, and every flush fails with ENOSPC."""
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    return io.BufferedWriter(_FullDisk(fd, "wb"), size)
