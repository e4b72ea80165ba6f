"""Records as Parquet: an explicit schema, row groups streamed as records arrive, nothing dropped.

Needs the optional extra ``eas-fleet-scanner[parquet]`` (pyarrow); importing this module without
pyarrow raises ``ConfigError`` naming the extra, so a caller can fail before any request is sent.

Schema (``SCHEMA``), one row per record, columns in this order:

==========================  ==================================  ==========================================
column                      type                                holds
==========================  ==================================  ==========================================
``AccountId``               string                              the account (org scans); null otherwise
``ClusterId``               string                              the region
``ServiceName``             string                              the service
26 instance fields          string: ``ExternalIP HostIP HostName InnerIP InstanceName InstanceType
                            Namespace Reason ResourceType Role Status TenantHostIP TenantInstanceIP Zone``;
                            int64: ``ExternalInstancePort InstancePort ReadyProcesses RestartCount
                            TotalProcesses``; float64: ``CurrentAmount OriginalAmount``;
                            bool: ``IsSpot Isolated``; timestamp[ms, UTC]: ``StartTime StartAt``;
                            string (JSON text): ``LastState``
``Service``                 struct<ServiceId, ServiceUid,       the record's ``Service`` object
                            Status, ServiceGroup, Resource,
                            ResourceAlias, WorkspaceId: string,
                            Labels: list<struct<LabelKey,
                            LabelValue: string>>, CreateTime:
                            timestamp[ms, UTC]>
``extra``                   string (JSON text)                  whatever the typed columns cannot hold
==========================  ==================================  ==========================================

Decisions:

- ``LastState`` is JSON text, not a list of structs: the API documents it as a list of free-form
  objects (Kubernetes container states: ``exitCode``, ``reason``, ``startedAt``, ``finishedAt`` and,
  depending on the state, ``signal``, ``message``, ``containerID``...). A struct would fix one key set
  and push every other key to ``extra``; the text keeps it whole, and DuckDB (``LastState->>'$[0].reason'``)
  and Spark (``from_json``) read it directly. Any JSON value (``null`` included) is kept as its text.
- Timestamps are parsed only when the text is exactly ``YYYY-MM-DDTHH:MM:SSZ`` (the API's form),
  checked by formatting the parsed value back and comparing, so reading a file back gives the same text.
- Nothing is silently dropped. The ``extra`` column holds a JSON object, shaped like the record, with
  (1) every field the schema does not know (a field the API adds later), (2) every value of an
  unexpected type (``"RestartCount": "3"``, a ``StartTime`` in another format, a label with a number),
  its typed column then being null, and (3) every explicit JSON ``null`` (a null column means the field
  was absent). A ``Service`` problem lands under ``extra["Service"]`` (a ``Labels`` list that does not fit
  goes there whole). Integers in a float column are stored as floats (equal in value) when a float
  holds them exactly (up to 2**53 either way); booleans are never taken for numbers, and other
  integers (outside int64, or past 2**53 in a float column) go to ``extra``. ``read_records`` merges ``extra``
  back, so a record read back equals the record written (key order aside).

``ParquetEncoder`` has the shape of the other encoders (``header``/``encode``/``finish`` -> bytes): rows
are converted to Arrow as each page arrives, buffered as Arrow batches (a few hundred bytes a row,
never the records themselves) and written as one row group per ``row_group_size`` rows, so memory is
bounded by one row group. The bytes go wherever the caller writes them: a ``-o`` file committed
atomically by the caller, or a part of a scan directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from scanner.errors import ConfigError

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - exercised in a subprocess without pyarrow
    raise ConfigError(
        "--format parquet needs pyarrow: install the extra with pip install 'eas-fleet-scanner[parquet]'"
    ) from None

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "SCHEMA",
    "ParquetEncoder",
    "read_records",
    "records_from_table",
    "row_count",
    "to_record_batch",
    "use_system_memory_pool",
    "write_records",
]

#: Records converted to Arrow at a time (each conversion has a fixed cost per column).
_CONVERT_ROWS: Final = 4096
#: Rows per row group: about 5-10 MB of Arrow data for typical records (measured: RSS flat in the
#: number of records; 16,384 rather than 32,768 saved 22 MB of peak RSS).
DEFAULT_ROW_GROUP_SIZE: Final = 16_384

_STRING_FIELDS: Final = (
    "ExternalIP", "HostIP", "HostName", "InnerIP", "InstanceName", "InstanceType", "Namespace", "Reason",
    "ResourceType", "Role", "Status", "TenantHostIP", "TenantInstanceIP", "Zone",
)  # fmt: skip
_INT_FIELDS: Final = (
    "ExternalInstancePort",
    "InstancePort",
    "ReadyProcesses",
    "RestartCount",
    "TotalProcesses",
)
_FLOAT_FIELDS: Final = ("CurrentAmount", "OriginalAmount")
_BOOL_FIELDS: Final = ("IsSpot", "Isolated")
_TIME_FIELDS: Final = ("StartAt", "StartTime")
_JSON_FIELDS: Final = ("LastState",)
_TAG_FIELDS: Final = ("AccountId", "ClusterId", "ServiceName")
_SERVICE_STRINGS: Final = (
    "ServiceId", "ServiceUid", "Status", "ServiceGroup", "Resource", "ResourceAlias", "WorkspaceId",
)  # fmt: skip

_TIMESTAMP: Final = pa.timestamp("ms", tz="UTC")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_TIME_PATTERN: Final = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$"
_TIME_TEXT: Final = re.compile(_TIME_PATTERN)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: The integers a float64 holds exactly: any other one in a float column goes to ``extra``
#: (pyarrow refuses to round it, and rounding would not read back equal).
_EXACT_IN_DOUBLE: Final = 2**53

_LABEL_TYPE: Final = pa.struct([("LabelKey", pa.string()), ("LabelValue", pa.string())])
_SERVICE_TYPE: Final = pa.struct(
    [
        *((name, pa.string()) for name in _SERVICE_STRINGS),
        ("Labels", pa.list_(_LABEL_TYPE)),
        ("CreateTime", _TIMESTAMP),
    ]
)
_SERVICE_KEYS: Final = frozenset(_SERVICE_TYPE.names)

_COLUMN_TYPES: Final[dict[str, pa.DataType]] = {
    **dict.fromkeys(_TAG_FIELDS, pa.string()),
    **dict.fromkeys(_STRING_FIELDS, pa.string()),
    **dict.fromkeys(_INT_FIELDS, pa.int64()),
    **dict.fromkeys(_FLOAT_FIELDS, pa.float64()),
    **dict.fromkeys(_BOOL_FIELDS, pa.bool_()),
    **dict.fromkeys(_TIME_FIELDS, _TIMESTAMP),
    **dict.fromkeys(_JSON_FIELDS, pa.string()),
}
#: Record fields in column order (tags, then the instance fields by name, then Service).
_RECORD_FIELDS: Final = (*_TAG_FIELDS, *sorted(set(_COLUMN_TYPES) - set(_TAG_FIELDS)), "Service")
_KNOWN_KEYS: Final = frozenset(_RECORD_FIELDS)

#: The explicit schema every Parquet output uses (documented in the module docstring).
SCHEMA: Final = pa.schema(
    [
        *(pa.field(name, _COLUMN_TYPES[name]) for name in _RECORD_FIELDS[:-1]),
        pa.field("Service", _SERVICE_TYPE),
        pa.field("extra", pa.string()),
    ],
    metadata={b"eas-fleet-scanner.schema": b"1"},
)

# Which Python types a typed column takes as is (exact types: a bool is not an int here).
_ACCEPTS: Final[dict[str, frozenset[type]]] = {
    **dict.fromkeys(_TAG_FIELDS + _STRING_FIELDS + _TIME_FIELDS, frozenset({str})),
    **dict.fromkeys(_INT_FIELDS, frozenset({int})),
    **dict.fromkeys(_FLOAT_FIELDS, frozenset({float, int})),
    **dict.fromkeys(_BOOL_FIELDS, frozenset({bool})),
}
_NONE: Final = type(None)
#: The integers a column holds (int64, or those a float64 holds exactly); others go to ``extra``.
_INT_RANGES: Final[dict[str, tuple[int, int]]] = dict.fromkeys(
    _FLOAT_FIELDS, (-_EXACT_IN_DOUBLE, _EXACT_IN_DOUBLE)
)


def _parse_time(value: str) -> datetime | None:
    """A ``YYYY-MM-DDTHH:MM:SSZ`` text as an aware datetime, or None for any other text."""
    if not _TIME_TEXT.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.strftime(_TIME_FORMAT) == value else None


class _Extras:
    """The ``extra`` object of each row, created only for the rows that need one."""

    __slots__ = ("rows",)

    def __init__(self, size: int) -> None:
        self.rows: list[dict[str, Any] | None] = [None] * size

    def put(self, row: int, name: str, value: Any) -> None:
        extra = self.rows[row]
        if extra is None:
            extra = self.rows[row] = {}
        extra[name] = value


def _typed_column(name: str, records: list[dict[str, Any]], extras: _Extras) -> pa.Array:
    values = [record.get(name) for record in records]
    types = set(map(type, values))
    accepted = _ACCEPTS[name]
    slow = not types <= accepted | {_NONE}
    low, high = _INT_RANGES.get(name, (_INT64_MIN, _INT64_MAX))
    if not slow and int in accepted and int in types:
        ints = [value for value in values if type(value) is int]
        slow = min(ints) < low or max(ints) > high
    if _NONE in types:  # an explicit null (not an absent field) is kept in extra
        for row, value in enumerate(values):
            if value is None and name in records[row]:
                extras.put(row, name, None)
    if slow:
        for row, value in enumerate(values):
            if value is None:
                continue
            kind = type(value)
            if kind not in accepted or (kind is int and not low <= value <= high):
                extras.put(row, name, value)
                values[row] = None
    if name in _TIME_FIELDS:
        return _time_column(name, values, extras)
    return pa.array(values, type=_COLUMN_TYPES[name])


def _time_column(name: str, values: list[Any], extras: _Extras) -> pa.Array:
    text = pa.array(values, type=pa.string())
    matching = pc.match_substring_regex(text, _TIME_PATTERN)
    candidate = pc.if_else(matching, text, pa.scalar(None, pa.string()))
    parsed = pc.strptime(candidate, format=_TIME_FORMAT, unit="s", error_is_null=True)
    # strptime rolls an impossible day over (Feb 30 -> Mar 2): the day must be the one written. With
    # the pattern's ranges, every text that passes then formats back to itself.
    written_day = pc.cast(pc.utf8_slice_codeunits(candidate, 8, 10), pa.int64())
    good = pc.fill_null(pc.equal(pc.day(parsed), written_day), False)
    bad = pc.and_(text.is_valid(), pc.invert(good))
    if pc.any(bad).as_py():
        for row, is_bad in enumerate(bad.to_pylist()):
            if is_bad:
                extras.put(row, name, values[row])
        parsed = pc.if_else(bad, pa.scalar(None, parsed.type), parsed)
    return parsed.cast(pa.timestamp("s", tz="UTC")).cast(_TIMESTAMP)


def _json_column(name: str, records: list[dict[str, Any]]) -> pa.Array:
    dumps = orjson.dumps
    return pa.array(
        [dumps(record[name]).decode() if name in record else None for record in records], type=pa.string()
    )


def _labels(value: Any) -> list[dict[str, str]] | None:
    """``Labels`` as the struct list takes it, or None when it does not fit (then it goes to extra)."""
    if type(value) is not list:
        return None
    for label in value:
        if type(label) is not dict or not label.keys() <= {"LabelKey", "LabelValue"}:
            return None
        if any(type(text) is not str for text in label.values()):
            return None
    return value


def _service_value(service: Any) -> tuple[dict[str, Any] | None, Any]:
    """(the struct value, what goes to ``extra["Service"]``, or ``_NO_EXTRA``)."""
    if type(service) is not dict:
        return None, service
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in service.items():
        if key not in _SERVICE_KEYS or value is None:
            extra[key] = value
        elif key == "Labels":
            labels = _labels(value)
            if labels is None:
                extra[key] = value
            else:
                row[key] = labels
        elif key == "CreateTime":
            parsed = _parse_time(value) if type(value) is str else None
            if parsed is None:
                extra[key] = value
            else:
                row[key] = parsed
        elif type(value) is str:
            row[key] = value
        else:
            extra[key] = value
    return row, extra if extra else _NO_EXTRA


_NO_EXTRA: Final = object()


def _service_column(records: list[dict[str, Any]], extras: _Extras) -> pa.Array:
    # The records of a page share one Service object: convert each distinct one once, then repeat
    # it by index (``take``) instead of converting a struct per row.
    slots: dict[int, int] = {}
    distinct: list[dict[str, Any] | None] = []
    distinct_extra: list[Any] = []
    indices: list[int | None] = []
    append = indices.append
    for row, record in enumerate(records):
        if "Service" not in record:
            append(None)
            continue
        service = record["Service"]
        slot = slots.get(id(service))
        if slot is None:
            slot = slots[id(service)] = len(distinct)
            value, extra = _service_value(service)
            distinct.append(value)
            distinct_extra.append(extra)
        append(slot)
        if distinct_extra[slot] is not _NO_EXTRA:
            extras.put(row, "Service", distinct_extra[slot])
    return pa.array(distinct, type=_SERVICE_TYPE).take(pa.array(indices, type=pa.int32()))


def to_record_batch(records: list[dict[str, Any]]) -> pa.RecordBatch:
    """Records as one Arrow batch of ``SCHEMA`` (see the module docstring for what goes where)."""
    extras = _Extras(len(records))
    known = _KNOWN_KEYS
    for row, record in enumerate(records):
        if not known.issuperset(record):
            for key in sorted(record.keys() - known):
                extras.put(row, key, record[key])
    columns: list[pa.Array] = []
    for name in _RECORD_FIELDS[:-1]:
        if name in _JSON_FIELDS:
            columns.append(_json_column(name, records))
        else:
            columns.append(_typed_column(name, records, extras))
    columns.append(_service_column(records, extras))
    dumps = orjson.dumps
    columns.append(
        pa.array([None if e is None else dumps(e).decode() for e in extras.rows], type=pa.string())
    )
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


class _Drain:
    """A write-only file for ``ParquetWriter`` whose bytes the encoder hands on, then forgets."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def use_system_memory_pool() -> None:
    """Let pyarrow allocate with the C library's ``malloc`` for the rest of the process.

    pyarrow's default pool (jemalloc) keeps the pages it freed for reuse, so a long scan that
    converts one row group after another holds more memory than it uses at any moment. It is
    process-wide: the CLI, which owns its process, calls it; the library never does it unasked.
    """
    pa.set_memory_pool(pa.system_memory_pool())


class ParquetEncoder:
    """Records in, Parquet bytes out: ``header()`` once, ``encode(page)`` per page, ``finish()`` at the end.

    Concatenated, the bytes are one Parquet file. ``encode`` returns ``b""`` until a row group is full.
    """

    extension: Final = "parquet"

    def __init__(self, *, row_group_size: int = DEFAULT_ROW_GROUP_SIZE, compression: str = "zstd") -> None:
        if row_group_size < 1:
            raise ConfigError(f"row_group_size must be >= 1, got {row_group_size}")
        self._row_group_size = row_group_size
        self._drain = _Drain()
        self._writer = pq.ParquetWriter(self._drain, SCHEMA, compression=compression)
        self._records: list[dict[str, Any]] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0
        self.row_groups = 0
        self._finished = False

    def header(self) -> bytes:
        return self._drain.take()

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        if self._finished:
            raise ValueError("encode() after finish()")
        # Pages are small (100 records): convert a few thousand rows at a time, since each Arrow
        # conversion has a fixed cost per column. The records held meanwhile are a few MB.
        self._records.extend(records)
        if len(self._records) >= _CONVERT_ROWS:
            self._convert()
        while self._pending_rows >= self._row_group_size:
            self._flush(self._row_group_size)
        return self._drain.take()

    def _convert(self) -> None:
        if self._records:
            batch = to_record_batch(self._records)
            self._records = []
            self.rows += batch.num_rows
            self._pending.append(batch)
            self._pending_rows += batch.num_rows

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=SCHEMA)
        head, rest = table.slice(0, rows), table.slice(rows)
        self._writer.write_table(head, row_group_size=max(rows, 1))
        self.row_groups += 1
        self._pending = rest.combine_chunks().to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def finish(self) -> bytes:
        """Write the last row group and the footer; the returned bytes end the file."""
        if not self._finished:
            self._finished = True
            self._convert()
            while self._pending_rows >= self._row_group_size:
                self._flush(self._row_group_size)
            if self._pending_rows:
                self._flush(self._pending_rows)
            self._writer.close()
        return self._drain.take()


def _service_rows(column: Any) -> list[dict[str, Any] | None]:
    """The ``Service`` of each row; consecutive rows of one service share one dict (as when written).

    Built from the struct's children (cheap to convert) instead of a dict per row from Arrow.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = column.is_valid().to_pylist()
    children = dict(zip(_SERVICE_TYPE.names, column.flatten(), strict=True))
    strings = [(name, children[name].to_pylist()) for name in _SERVICE_STRINGS]
    created = pc.strftime(children["CreateTime"].cast(pa.timestamp("s", tz="UTC")), format=_TIME_FORMAT)
    created_list = created.to_pylist()
    labels = children["Labels"]
    lengths = labels.value_lengths().to_pylist()
    flat = labels.flatten()
    label_keys = flat.field("LabelKey").to_pylist()
    label_values = flat.field("LabelValue").to_pylist()
    rows: list[dict[str, Any] | None] = []
    previous: tuple[Any, ...] = ()
    service: dict[str, Any] = {}
    start = 0
    for row, is_valid in enumerate(valid):
        length = lengths[row]
        stop = start + (length or 0)
        if not is_valid:
            rows.append(None)
            start = stop
            continue
        key = (
            tuple(values[row] for _, values in strings),
            created_list[row],
            length,
            tuple(label_keys[start:stop]),
            tuple(label_values[start:stop]),
        )
        if key != previous:
            previous = key
            service = {name: values[row] for name, values in strings if values[row] is not None}
            if length is not None:
                service["Labels"] = [
                    {
                        name: text
                        for name, text in (("LabelKey", label_keys[i]), ("LabelValue", label_values[i]))
                        if text is not None
                    }
                    for i in range(start, stop)
                ]
            if created_list[row] is not None:
                service["CreateTime"] = created_list[row]
        rows.append(service)
        start = stop
    return rows


def records_from_table(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """The records a batch or table of ``SCHEMA`` holds, ``extra`` merged back (the inverse of writing)."""
    columns: list[tuple[str, list[Any], Any]] = []  # (name, values, the value that means "absent")
    loads = orjson.loads
    for name in _RECORD_FIELDS[:-1]:
        column = table.column(name)
        if name in _TIME_FIELDS:
            column = pc.strftime(column.cast(pa.timestamp("s", tz="UTC")), format=_TIME_FORMAT)
        values = column.to_pylist()
        if name in _JSON_FIELDS:  # the text "null" is an explicit null, a null cell an absent field
            columns.append((name, [_ABSENT if text is None else loads(text) for text in values], _ABSENT))
        else:
            columns.append((name, values, None))
    services = _service_rows(table.column("Service"))
    extras = table.column("extra").to_pylist()
    records: list[dict[str, Any]] = []
    for row in range(table.num_rows):
        record = {name: values[row] for name, values, absent in columns if values[row] is not absent}
        service = services[row]
        if service is not None:
            record["Service"] = service
        extra_text = extras[row]
        if extra_text is not None:
            _merge_extra(record, loads(extra_text), service is not None)
        records.append(record)
    return records


_ABSENT: Final = object()


def _merge_extra(record: dict[str, Any], extra: Mapping[str, Any], has_service_struct: bool) -> None:
    for key, value in extra.items():
        if key == "Service" and has_service_struct and isinstance(value, dict):
            record["Service"] = {**record["Service"], **value}  # a copy: the struct's dict is shared
        else:
            record[key] = value


def read_records(path: str | Path, *, batch_size: int = 8192) -> Iterator[dict[str, Any]]:
    """Every record of a Parquet file written with ``SCHEMA``, a batch at a time (bounded memory)."""
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=batch_size):
            yield from records_from_table(batch)


def row_count(path: str | Path) -> int:
    """How many records a Parquet file holds (from its footer)."""
    with pq.ParquetFile(path) as parquet:
        return int(parquet.metadata.num_rows)


def write_records(path: str | Path, records: Iterable[dict[str, Any]], **options: Any) -> int:
    """Write ``records`` to a new Parquet file at ``path`` (not atomically: a helper for tests and tools)."""
    encoder = ParquetEncoder(**options)
    count = 0
    with open(path, "wb") as file:
        file.write(encoder.header())
        page: list[dict[str, Any]] = []
        for record in records:
            page.append(record)
            if len(page) == 1000:
                file.write(encoder.encode(page))
                count += len(page)
                page = []
        file.write(encoder.encode(page))
        count += len(page)
        file.write(encoder.finish())
    return count
