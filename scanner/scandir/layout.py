"""Where things live in a scan directory: hive-style partition folders, part files, manifest entries.

::

    DIR/
      account=<AccountId>/region=<ClusterId>/part-<n>.<ext>   multi-account scans
      region=<ClusterId>/part-<n>.<ext>                       single-account scans
      _manifest/scan.json                                     the scan's parameters, when it was created
      _manifest/parts/<unit>.json                             one entry per (account, region)
      _manifest/runs/<run id>.json                            each process that wrote: times, expected units
      _manifest/locks/<unit>.lock                             flock'ed while a process writes that unit

Readers of hive-partitioned datasets (DuckDB, Spark, pyarrow) skip names starting with ``_`` or ``.``, so
the manifest and temporary files (``.part-0.jsonl.<random>.tmp``) are never read as data.

Partition values are written as they are when they only hold ``A-Z a-z 0-9 _ - .`` (every region id
and account id does); any other byte is percent-encoded (``%2F``), as Hive and pyarrow do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, NamedTuple
from urllib.parse import quote, unquote

from scanner.errors import ConfigError

__all__ = [
    "LOCKS",
    "MANIFEST",
    "PARTS",
    "RUNS",
    "SCAN_FILE",
    "Unit",
    "escape",
    "part_name",
    "part_number",
    "unit_folders",
    "unit_from_key",
]

MANIFEST: Final = "_manifest"
SCAN_FILE: Final = "_manifest/scan.json"
PARTS: Final = "_manifest/parts"
RUNS: Final = "_manifest/runs"
LOCKS: Final = "_manifest/locks"

_PART: Final = re.compile(r"part-(\d+)\.[a-z]+")


def escape(value: str, what: str) -> str:
    """A partition value as a folder name component (percent-encoded where needed)."""
    if not value:
        raise ConfigError(f"{what} must not be empty")
    text = quote(value, safe="")
    if text.startswith("."):  # "." and ".." are not folder names, and a leading dot hides a file
        text = "%2E" + text[1:]
    return text


class Unit(NamedTuple):
    """The unit of work and of resume: one region of one account (``account`` None: single account)."""

    account: str | None
    region: str

    @property
    def folder(self) -> str:
        """The unit's partition folder, relative to the scan directory."""
        region = f"region={escape(self.region, 'a region')}"
        if self.account is None:
            return region
        return f"account={escape(self.account, 'an account')}/{region}"

    @property
    def key(self) -> str:
        """A file name for the unit (its manifest entry, its lock): the folder with ``/`` as ``+``."""
        return self.folder.replace("/", "+")

    def to_json(self) -> dict[str, str | None]:
        return {"account": self.account, "region": self.region}

    def __str__(self) -> str:
        return self.region if self.account is None else f"{self.account}/{self.region}"


def unit_from_key(key: str) -> Unit | None:
    """The unit a ``Unit.key`` names, or None if ``key`` is not one."""
    parts = key.split("+")
    values: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or not value or name in values:
            return None
        values[name] = unquote(value)
    if set(values) == {"region"}:
        return Unit(None, values["region"])
    if set(values) == {"account", "region"} and len(parts) == 2 and parts[0].startswith("account="):
        return Unit(values["account"], values["region"])
    return None


def part_name(number: int, extension: str) -> str:
    return f"part-{number}.{extension}"


def part_number(name: str) -> int | None:
    """``n`` of a ``part-<n>.<ext>`` name, or None."""
    match = _PART.fullmatch(name)
    return int(match.group(1)) if match else None


def unit_folders(root: Path) -> list[Unit]:
    """The units that have a partition folder under ``root`` (whatever the manifest says)."""
    units: list[Unit] = []
    for child in sorted(root.glob("region=*")):
        if child.is_dir():
            units.append(Unit(None, unquote(child.name[len("region=") :])))
    for account in sorted(root.glob("account=*")):
        if not account.is_dir():
            continue
        for child in sorted(account.glob("region=*")):
            if child.is_dir():
                units.append(
                    Unit(unquote(account.name[len("account=") :]), unquote(child.name[len("region=") :]))
                )
    return units
