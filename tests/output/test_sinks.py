from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest

from scanner.eas.params import INSTANCE_FIELDS
from scanner.errors import ConfigError
from scanner.output.sinks import CSV_COLUMNS, CsvEncoder, JsonlEncoder, encoder_for

RECORDS: list[dict[str, Any]] = [
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


def test_csv_text_is_exactly_as_documented() -> None:
    """Hand-written expected text (not the encoder's rules run again): quoting, nested values as
    JSON, booleans as true/false, nothing for null or a missing field."""
    columns = ("ClusterId", "ServiceName", "InstanceName", "IsSpot", "LastState", "CurrentAmount", "Zone")
    encoder = CsvEncoder(columns)
    records = [
        *RECORDS,
        {
            "ClusterId": "cn-hangzhou",
            "ServiceName": "ünïcode",
            "InstanceName": "",
            "IsSpot": True,
            "LastState": {"a": [1, None]},
            "CurrentAmount": 3,
            "Zone": "cn-hangzhou-h",
        },
    ]
    assert (encoder.header() + encoder.encode(records)).decode() == (
        "ClusterId,ServiceName,InstanceName,IsSpot,LastState,CurrentAmount,Zone\n"
        'cn-shanghai,foo,foo-1,false,"[{""Reason"":""OOMKilled"",""ExitCode"":137}]",0.444,\n'
        'cn-beijing,bar,"quote""and,comma\nnewline",,,,\n'
        'cn-hangzhou,ünïcode,,true,"{""a"":[1,null]}",3,cn-hangzhou-h\n'
    )
