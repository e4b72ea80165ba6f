from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.eas.params import INSTANCE_FIELDS
from scanner.errors import ConfigError
from scanner.output.sinks import (
    CSV_COLUMNS,
    CsvEncoder,
    JsonlEncoder,
    OutputFile,
    check_writable,
    encoder_for,
)
from tests.disk import fdopen_on_full_disk

RECORDS = [
    {
        "InstanceName": "foo-1",
        "IsSpot": False,
        "LastState": [{"Reason": "OOMKilled", "ExitCode": 137}],
        "CurrentAmount": 0.444,
        "InstancePort": 8080,
        "ClusterId": "cn-shanghai",
        "ServiceName": "foo",
        "Service": {"ServiceId": "eas-m-1"},
        "Zone": None,
    },
    {"InstanceName": 'quote"and,comma\nnewline', "ClusterId": "cn-beijing", "ServiceName": "bar"},
]


def test_jsonl_is_one_record_per_line() -> None:
    data = JsonlEncoder().encode(RECORDS)
    lines = data.splitlines()
    assert data.endswith(b"\n")
    assert [orjson.loads(line) for line in lines] == RECORDS


def test_csv_has_one_column_per_instance_field_plus_where() -> None:
    encoder = CsvEncoder()
    text = (encoder.header() + encoder.encode(RECORDS)).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["ClusterId", "ServiceName", *INSTANCE_FIELDS]
    assert len(CSV_COLUMNS) == 28
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["ClusterId"] == "cn-shanghai"
    assert first["IsSpot"] == "false"
    assert orjson.loads(first["LastState"]) == [{"Reason": "OOMKilled", "ExitCode": 137}]
    assert first["CurrentAmount"] == "0.444"
    assert first["Zone"] == ""
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["InstanceName"] == 'quote"and,comma\nnewline'


def test_unknown_format() -> None:
    with pytest.raises(ConfigError, match="jsonl or csv"):
        encoder_for("xml")


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


def test_discard_on_a_full_disk_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    monkeypatch.setattr(os, "fdopen", fdopen_on_full_disk)
    out = OutputFile(target)
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


def test_read_only_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, who can write anywhere, so the permission check itself is faked.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ConfigError, match="cannot write"):
        check_writable(tmp_path / "out.jsonl")
