"""Records: tagging in place and their JSON Lines encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scanner.records import encode_jsonl, service_summary, tag_instances
from tests.fakes import FakeService, make_instance


def page_of(service: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    summary = service_summary(FakeService(service, 1).as_item("cn-shanghai"))
    items = [make_instance(service, index, start + index) for index in range(count)]
    return tag_instances(items, "cn-shanghai", service, summary)


def reference(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


@pytest.mark.parametrize(
    "records",
    [
        page_of("alpha", 3),
        page_of("alpha", 2) + page_of("beta", 2, start=10),  # two Service objects
        [{"InstanceName": "bare"}, {"InstanceName": "bare-2"}],  # untagged
        [{"InstanceName": "x", "Service": "not an object"}],
        page_of("alpha", 1),
        [],
    ],
)
def test_every_record_is_one_compact_line_exactly_as_orjson_writes_it(records: list[dict[str, Any]]) -> None:
    snapshot = [dict(record) for record in records]
    services = [record.get("Service") for record in records]
    assert encode_jsonl(records) == reference(snapshot)
    # The records are as they were: same values, and still sharing their Service object.
    assert records == snapshot
    assert [record.get("Service") for record in records] == services
    assert all(record.get("Service") is service for record, service in zip(records, services, strict=True))


def test_a_record_that_cannot_be_encoded_leaves_the_batch_as_it_was() -> None:
    records = page_of("alpha", 3)
    shared = records[0]["Service"]
    records[2]["Bad"] = {1, 2}  # a set is not JSON
    with pytest.raises(orjson.JSONEncodeError):
        encode_jsonl(records)
    assert all(record["Service"] is shared for record in records)
