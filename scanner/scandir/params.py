"""The parameters that make two runs parts of one scan (and a resume refuse when they differ)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from scanner.errors import ConfigError
from scanner.scandir.formats import check_format

__all__ = ["ScanParams"]


def _names(values: Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise ConfigError(f"{what} must be a list of names, not the string {values!r}")
    names = tuple(sorted(set(values)))
    if any(not isinstance(name, str) or not name for name in names):
        raise ConfigError(f"{what} must be non-empty strings, got {names!r}")
    return names


@dataclass(frozen=True, slots=True, eq=True)
class ScanParams:
    """What a scan directory holds: the same for every run and every shard that writes into it.

    ``filters``: the listing parameters as the CLI names them (``instance_status``, ``services``...);
    values must be JSON (text, numbers, booleans, lists). ``regions``: the regions asked for, or None
    for every region ``DescribeRegions`` lists. ``accounts``: None for a single-account scan (folders
    ``region=...``); for an organisation scan, the account ids asked for, or a word naming how they are
    found (``"organization"``): folders ``account=.../region=...``. ``format``: jsonl, csv or parquet.
    Lists are compared as sets (order and repeats do not matter).
    """

    format: str = "jsonl"
    filters: Mapping[str, Any] = field(default_factory=dict)
    regions: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        check_format(self.format)
        object.__setattr__(self, "regions", _names(self.regions, "regions"))
        if not isinstance(self.accounts, str):
            object.__setattr__(self, "accounts", _names(self.accounts, "accounts"))
        elif not self.accounts:
            raise ConfigError("accounts must be a list of account ids or a non-empty word")
        try:
            filters = orjson.loads(orjson.dumps(dict(self.filters), option=orjson.OPT_SORT_KEYS))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ConfigError(f"scan filters must be JSON values: {exc}") from None
        object.__setattr__(self, "filters", filters)

    __hash__ = None  # type: ignore[assignment]  # filters is a dict

    @property
    def multi_account(self) -> bool:
        return self.accounts is not None

    def to_json(self) -> dict[str, Any]:
        accounts = (
            self.accounts if isinstance(self.accounts, str) or self.accounts is None else list(self.accounts)
        )
        return {
            "format": self.format,
            "filters": dict(self.filters),
            "regions": None if self.regions is None else list(self.regions),
            "accounts": accounts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScanParams:
        accounts = data.get("accounts")
        regions = data.get("regions")
        return cls(
            format=data.get("format", "jsonl"),
            filters=data.get("filters") or {},
            regions=None if regions is None else tuple(regions),
            accounts=accounts if accounts is None or isinstance(accounts, str) else tuple(accounts),
        )

    def differences(self, other: ScanParams) -> list[str]:
        """``name: value here, value there`` for each parameter that differs (empty: the same scan)."""
        mine, theirs = self.to_json(), other.to_json()
        diffs: list[str] = []
        for name in mine:
            if name == "filters":
                keys = sorted(set(mine["filters"]) | set(theirs["filters"]))
                for key in keys:
                    a, b = mine["filters"].get(key), theirs["filters"].get(key)
                    if a != b:
                        diffs.append(f"{key}: {_show(a)} vs {_show(b)}")
            elif mine[name] != theirs[name]:
                diffs.append(f"{name}: {_show(mine[name])} vs {_show(theirs[name])}")
        return diffs


def _show(value: Any) -> str:
    return "(not set)" if value is None else orjson.dumps(value).decode()
