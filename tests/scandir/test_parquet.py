from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from scanner.output.parquet import (
    SCHEMA,
    ParquetEncoder,
    read_records,
    records_from_table,
    to_record_batch,
    use_system_memory_pool,
)
from scanner.output.sinks import JsonlEncoder
from scanner.scandir import ScanDirectory, ScanParams
from scanner.scandir.formats import iter_records
from scanner.simulator.spec import FleetSpec
from tests.scandir.fleet import pages, records_by_region

ROOT = Path(__file__).resolve().parents[2]


def encode(records: list[dict[str, Any]], **options: Any) -> bytes:
    encoder = ParquetEncoder(**options)
    out = io.BytesIO()
    out.write(encoder.header())
    for page in pages(records):
        out.write(encoder.encode(page))
    out.write(encoder.finish())
    return out.getvalue()


def test_every_record_reads_back_as_its_json_line(tmp_path: Path) -> None:
    spec = FleetSpec(regions=3, services_per_region=40, total_instances=6000)
    records = [record for region in records_by_region(spec, seed=7).values() for record in region]
    assert any(record["LastState"] for record in records)
    jsonl = b"".join(JsonlEncoder().encode(page) for page in pages(records))
    path = tmp_path / "fleet.parquet"
    path.write_bytes(encode(records, row_group_size=1000))

    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.equals(SCHEMA, check_metadata=False)
    assert parquet.metadata.num_row_groups == 6
    back = list(read_records(path))
    assert back == [orjson.loads(line) for line in jsonl.splitlines()]
    assert pq.read_table(path).column("extra").null_count == len(records)  # nothing unexpected


def test_types_are_the_documented_ones() -> None:
    by_name = {field.name: field.type for field in SCHEMA}
    assert by_name["RestartCount"] == pa.int64()
    assert by_name["CurrentAmount"] == pa.float64()
    assert by_name["IsSpot"] == pa.bool_()
    assert by_name["StartTime"] == pa.timestamp("ms", tz="UTC")
    assert by_name["LastState"] == pa.string()
    assert by_name["Service"].field("Labels").type == pa.list_(
        pa.struct([("LabelKey", pa.string()), ("LabelValue", pa.string())])
    )
    assert SCHEMA.names[:3] == ["AccountId", "ClusterId", "ServiceName"]
    assert len(SCHEMA.names) == 3 + 26 + 2
    record = records_by_region()["cn-hangzhou"][0]
    batch = to_record_batch([record])
    start = batch.column("StartTime")[0].as_py()
    assert start.isoformat() == record["StartTime"].replace("Z", "+00:00")


ODD: list[dict[str, Any]] = [
    {"InstanceName": "new-field", "ClusterId": "r", "GpuMemory": {"total": 80}, "Status": "Running"},
    {
        "InstanceName": "mistyped",
        "RestartCount": "3",
        "IsSpot": "true",
        "CurrentAmount": True,
        "InstancePort": 1.5,
        "Zone": 7,
        "ExternalInstancePort": 2**64 - 1,
    },
    {"InstanceName": "int-in-float", "CurrentAmount": 3, "OriginalAmount": -0.5},
    {"InstanceName": "times", "StartTime": "2025-12-22T00:46:42.123Z", "StartAt": ""},
    {"InstanceName": "bad-date", "StartTime": "2025-02-30T00:00:00Z", "StartAt": "2025-12-22 00:46:42"},
    {"InstanceName": "edge-times", "StartTime": "2024-02-29T23:59:59Z", "StartAt": "2025-01-01T00:00:60Z"},
    {"InstanceName": "hour-24", "StartTime": "2025-01-01T24:00:00Z", "StartAt": "0001-01-01T00:00:00Z"},
    {"InstanceName": "nulls", "Reason": None, "LastState": None, "Service": None},
    {"InstanceName": "last-state", "LastState": {"not": "a list"}},
    {
        "InstanceName": "service-odd",
        "Service": {
            "ServiceId": "eas-m-1",
            "Labels": [{"LabelKey": "a", "LabelValue": 1}],
            "CreateTime": "yesterday",
            "Brand": "new",
            "Status": None,
        },
    },
    {"InstanceName": "service-text", "Service": "eas-m-2"},
    {
        "InstanceName": "labels-partial",
        "Service": {"Labels": [{"LabelKey": "k"}], "CreateTime": "2024-05-09T02:49:32Z"},
    },
    {"InstanceName": "empty-service", "Service": {}},
    {"InstanceName": "account", "AccountId": "1234", "extra": "a field named like our column"},
    {},
]


def test_nothing_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    path.write_bytes(encode(ODD))
    assert list(read_records(path)) == ODD

    table = pq.read_table(path)
    rows = table.to_pylist()
    assert orjson.loads(rows[0]["extra"]) == {"GpuMemory": {"total": 80}}
    mistyped = rows[1]
    assert mistyped["RestartCount"] is None
    assert mistyped["InstancePort"] is None  # 1.5 is not silently made 1
    assert mistyped["CurrentAmount"] is None  # a boolean is not a number
    assert orjson.loads(mistyped["extra"]) == {
        "CurrentAmount": True,
        "ExternalInstancePort": 2**64 - 1,
        "InstancePort": 1.5,
        "IsSpot": "true",
        "RestartCount": "3",
        "Zone": 7,
    }
    assert rows[2]["CurrentAmount"] == 3.0
    assert orjson.loads(rows[3]["extra"]) == {"StartTime": "2025-12-22T00:46:42.123Z", "StartAt": ""}
    assert rows[3]["StartTime"] is None
    assert orjson.loads(rows[4]["extra"]) == {
        "StartTime": "2025-02-30T00:00:00Z",
        "StartAt": "2025-12-22 00:46:42",
    }
    assert orjson.loads(rows[5]["extra"]) == {"StartAt": "2025-01-01T00:00:60Z"}
    assert rows[5]["StartTime"] is not None
    assert orjson.loads(rows[6]["extra"]) == {"StartTime": "2025-01-01T24:00:00Z"}
    del rows[5:7]
    assert orjson.loads(rows[5]["extra"]) == {"Reason": None, "Service": None}
    assert rows[5]["LastState"] == "null"
    assert rows[6]["LastState"] == '{"not":"a list"}'
    service = rows[7]["Service"]
    assert service["ServiceId"] == "eas-m-1"
    assert service["Labels"] is None
    assert orjson.loads(rows[7]["extra"]) == {
        "Service": {
            "Labels": [{"LabelKey": "a", "LabelValue": 1}],
            "CreateTime": "yesterday",
            "Brand": "new",
            "Status": None,
        }
    }
    assert rows[8]["Service"] is None
    assert rows[9]["Service"]["CreateTime"] is not None
    assert orjson.loads(rows[11]["extra"]) == {"extra": "a field named like our column"}


def test_huge_integers_go_to_extra() -> None:
    record = {"InstanceName": "big", "RestartCount": 2**63, "TotalProcesses": -(2**63)}
    batch = to_record_batch([record])
    assert batch.column("RestartCount")[0].as_py() is None
    assert batch.column("TotalProcesses")[0].as_py() == -(2**63)
    assert records_from_table(batch) == [record]


def test_row_groups_stream_with_bounded_memory() -> None:
    records = records_by_region()["cn-shenzhen"] * 30  # 9,000 records
    encoder = ParquetEncoder(row_group_size=1000)
    sizes = [len(encoder.header())]
    for page in pages(records):
        sizes.append(len(encoder.encode(page)))
        # Never more than a conversion chunk of records plus a row group of Arrow rows held.
        assert len(encoder._records) < 4096
        assert encoder._pending_rows < 1000
    encoder.finish()
    assert encoder.row_groups == 9
    assert encoder.rows == len(records)
    assert sum(1 for size in sizes if size) >= 2  # bytes come out while pages go in


def test_an_empty_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(encode([]))
    assert pq.read_table(path).num_rows == 0
    assert list(read_records(path)) == []


@pytest.mark.asyncio
async def test_a_parquet_scan_directory_is_a_hive_dataset(tmp_path: Path) -> None:
    by_account = {account: records_by_region(account=account) for account in ("111", "222")}
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(format="parquet", accounts=("111", "222")))
    for account, by_region in by_account.items():
        for region, records in by_region.items():
            async with directory.part(account, region) as part:
                for page in pages(records):
                    await part.write(page)
                await part.commit()
    assert directory.verify() == []
    dataset = ds.dataset(tmp_path, format="parquet", partitioning="hive")
    table = dataset.to_table()
    total = sum(len(records) for by_region in by_account.values() for records in by_region.values())
    assert table.num_rows == total
    assert set(table.column("account").to_pylist()) == {111, 222}  # hive partitions infer ints
    assert set(table.column("region").to_pylist()) == set(by_account["111"]) - {"cn-beijing"}
    for unit, entry in directory.entries().items():
        assert (
            entry.file is None
            or list(iter_records(tmp_path / entry.file, "parquet"))
            == by_account[str(unit.account)][unit.region]
        )


def test_without_pyarrow_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from scanner.errors import ConfigError\n"
        "try:\n"
        "    import scanner.output.parquet\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "eas-fleet-scanner[parquet]" in result.stdout


def test_use_system_memory_pool_makes_malloc_pyarrow_s_default_and_records_still_round_trip() -> None:
    previous = pa.default_memory_pool()
    try:
        use_system_memory_pool()
        assert pa.default_memory_pool().backend_name == "system"
        records = [{"InstanceName": "a", "RestartCount": 3, "ClusterId": "cn-hangzhou", "ServiceName": "s"}]
        table = pa.Table.from_batches([to_record_batch(records)])
        assert records_from_table(table) == records
    finally:
        pa.set_memory_pool(previous)
