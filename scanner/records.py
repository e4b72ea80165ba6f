"""Output records: each instance exactly as the API returned it, tagged with where it lives.

A record is the instance's own JSON object (every field, untouched) plus three keys:
``ClusterId`` (the region), ``ServiceName``, and ``Service``, an object with the service's
identifying and state fields (``SERVICE_SUMMARY_FIELDS``); in a multi-account scan, a fourth:
``AccountId`` (a string). Tagging happens in place on the dict
orjson decoded, so no record is copied; every record of a service shares one ``Service`` object.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = [
    "RECORD_TAGS",
    "SERVICE_SUMMARY_FIELDS",
    "encode_jsonl",
    "service_summary",
    "tag_instances",
]

#: The Service fields copied into every record (others are in ListServices, not repeated per instance).
SERVICE_SUMMARY_FIELDS: Final[tuple[str, ...]] = (
    "ServiceId",
    "ServiceUid",
    "Status",
    "ServiceGroup",
    "Resource",
    "ResourceAlias",
    "WorkspaceId",
    "Labels",
    "CreateTime",
)

#: The keys added to each instance to make a record.
RECORD_TAGS: Final[tuple[str, ...]] = ("ClusterId", "ServiceName", "Service")


def service_summary(service: dict[str, Any]) -> dict[str, Any]:
    """The ``Service`` object of a record: the summary fields the service has."""
    return {name: service[name] for name in SERVICE_SUMMARY_FIELDS if name in service}


def tag_instances(
    items: list[dict[str, Any]],
    cluster_id: str,
    service_name: str,
    summary: dict[str, Any],
    account_id: str | None = None,
) -> list[dict[str, Any]]:
    """Turn a page's instances into records, in place, and return them. ``account_id`` (a
    multi-account scan) adds ``AccountId`` too; single-account records do not have it."""
    if account_id is not None:
        for item in items:
            item["AccountId"] = account_id
    for item in items:
        item["ClusterId"] = cluster_id
        item["ServiceName"] = service_name
        item["Service"] = summary
    return items


_DUMPS = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_Fragment = orjson.Fragment


def encode_jsonl(records: list[dict[str, Any]]) -> bytes:
    """Records as JSON Lines: one compact object per line, each ending in a newline."""
    shared = records[0].get("Service") if records else None
    if type(shared) is not dict:
        return b"".join([_DUMPS(record, option=_NEWLINE) for record in records])
    # The records of a page share one Service object (see tag_instances): encode it once and
    # splice it into every line that has it (a quarter of the encoding time), then put it back.
    fragment = _Fragment(_DUMPS(shared))
    try:
        for record in records:
            if record.get("Service") is shared:
                record["Service"] = fragment
        return b"".join([_DUMPS(record, option=_NEWLINE) for record in records])
    finally:
        for record in records:
            if record.get("Service") is fragment:
                record["Service"] = shared
