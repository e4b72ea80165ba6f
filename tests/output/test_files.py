"""Output files: written beside their path, renamed into place on commit, removed on discard; the
run's files (records, then summary) and the one-line errors when they cannot be saved."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest

from scanner.errors import ConfigError
from scanner.output.files import OutputFile, RunFiles, Saved, check_writable
from tests.output.fakefs import FaultyFileSystem


def test_a_file_appears_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"previous inventory\n")
    out = OutputFile(target)
    out.write(b'{"a":1}\n')
    assert target.read_bytes() == b"previous inventory\n"  # readers still see the old file
    assert out.temp_name is not None
    assert Path(out.temp_name).parent == tmp_path
    out.commit()
    assert target.read_bytes() == b'{"a":1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_discard_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"old\n")
    out = OutputFile(target)
    out.write(b"new\n")
    out.discard()
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_discard_on_a_full_disk_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    fs = FaultyFileSystem()
    fs.full_disk = {1}
    out = OutputFile(target, fs=fs)
    out.write(b"new\n")
    with pytest.raises(OSError, match="No space left on device"):
        out.commit()
    out.discard()  # the buffer still cannot be flushed: the file is closed and removed all the same
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_stdout_output_is_written_through() -> None:
    stream = io.BytesIO()
    out = OutputFile(None, stream=stream)
    out.write(b"x\n")
    out.commit()
    assert stream.getvalue() == b"x\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing" / "out.jsonl", "does not exist"),
        (lambda p: p, "is a directory"),
    ],
)
def test_unwritable_paths_are_refused_up_front(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_writable(make(tmp_path))


def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    # Tests may run as root, who can write anywhere, so the permission check itself is faked.
    fs = FaultyFileSystem()
    fs.read_only = {tmp_path}
    with pytest.raises(ConfigError, match="cannot write"):
        check_writable(tmp_path / "out.jsonl", fs=fs)


def test_the_run_files_commit_the_records_then_write_the_summary(tmp_path: Path) -> None:
    records, summary = tmp_path / "fleet.jsonl", tmp_path / "run.json"
    files = RunFiles(records, summary)
    files.records.write(b"{}\n")
    assert files.temp_names() == [files.records.temp_name]
    assert files.save_records(commit=True) == Saved(written=True)
    assert files.temp_names() == []
    assert files.save_summary(b"{}\n", records_written=True) is None
    assert (records.read_bytes(), summary.read_bytes()) == (b"{}\n", b"{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]


def test_run_files_without_a_summary_path_write_none(tmp_path: Path) -> None:
    files = RunFiles(None, None, stdout=io.BytesIO())
    assert files.save_records(commit=True) == Saved(written=True)
    assert files.save_summary(b"{}\n", records_written=True) is None
    assert list(tmp_path.iterdir()) == []


def test_no_room_for_the_records_temporary_file_is_a_config_error(tmp_path: Path) -> None:
    fs = FaultyFileSystem()
    fs.fail("mkstemp", errno.ENOSPC)
    with pytest.raises(ConfigError) as caught:
        RunFiles(tmp_path / "fleet.jsonl", None, fs=fs)
    assert str(caught.value) == (
        f"cannot write to {tmp_path / 'fleet.jsonl'} (No space left on device): "
        "free some space or choose another -o path"
    )


@pytest.mark.parametrize(
    ("operation", "code", "problem", "fix"),
    [
        ("fsync", errno.EIO, "Input/output error", "choose another -o path"),
        ("replace", errno.EXDEV, "Invalid cross-device link", "choose another -o path"),
        ("chmod", errno.ENOENT, "No such file or directory", "create its folder or choose another -o path"),
        ("fsync", errno.EDQUOT, "Disk quota exceeded", "free some space or choose another -o path"),
    ],
)
def test_records_that_cannot_be_committed_are_discarded_with_one_line(
    tmp_path: Path, operation: str, code: int, problem: str, fix: str
) -> None:
    records = tmp_path / "fleet.jsonl"
    records.write_bytes(b"old\n")
    fs = FaultyFileSystem()
    fs.fail(operation, code)
    files = RunFiles(records, None, fs=fs)
    files.records.write(b"new\n")
    assert files.save_records(commit=True) == Saved(
        written=False, error=f"cannot write to {records} ({problem}): the records were not saved; {fix}"
    )
    assert records.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.jsonl"]


def test_a_temporary_file_that_cannot_be_removed_is_named(tmp_path: Path) -> None:
    fs = FaultyFileSystem()
    fs.fail("unlink", errno.EROFS)
    files = RunFiles(tmp_path / "fleet.jsonl", None, fs=fs)
    stuck = files.records.temp_name
    assert files.save_records(commit=False) == Saved(
        written=False, error=f"its temporary file {stuck} could not be removed"
    )
    assert files.temp_names() == [stuck]


class _Closed(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def test_stdout_that_cannot_take_the_last_records(tmp_path: Path) -> None:
    files = RunFiles(None, None, stdout=io.BufferedWriter(_Closed()))
    files.records.write(b"{}\n")
    assert files.save_records(commit=True) == Saved(
        written=False,
        error="stdout was closed by its reader (broken pipe): the last records were not written",
    )


@pytest.mark.parametrize("records_written", [True, False])
def test_a_summary_on_a_full_disk_leaves_the_previous_one(tmp_path: Path, records_written: bool) -> None:
    summary = tmp_path / "run.json"
    summary.write_bytes(b"previous\n")
    fs = FaultyFileSystem()
    fs.full_disk = {2}  # the records' file is the first opened, the summary's the second
    files = RunFiles(tmp_path / "fleet.jsonl", summary, fs=fs)
    files.save_records(commit=True)
    error = files.save_summary(b"{}\n", records_written=records_written)
    assert error == (
        f"cannot write the summary to {summary} (No space left on device): "
        "free some space or choose another --summary path"
        + ("; the records were written, only the summary is missing" if records_written else "")
    )
    assert summary.read_bytes() == b"previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.jsonl", "run.json"]
