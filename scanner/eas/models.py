"""What an EAS response turns into: small value objects, items left as plain dicts.

Records are never wrapped in per-item objects: a page's items are the dicts orjson decoded,
untouched, so the hot path does no copying or validation per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Page", "Region"]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a ListServices or ListServiceInstances answer."""

    items: list[dict[str, Any]]
    total_count: int
    page_number: int
    page_size: int
    request_id: str
    #: Size of the response body, for statistics.
    body_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Region:
    region_id: str
    region_name: str
