"""The accounts file (``--accounts accounts.toml``) and the resolved list of accounts to scan.

::

    [defaults]                 # all optional
    role_name = "EasInventoryReader"
    external_id = "..."
    regions = ["cn-hangzhou", "cn-shanghai"]

    [[account]]
    id = "1234567890123456"    # required
    name = "prod"              # optional
    role_arn = "acs:ram::1234567890123456:role/Other"   # optional; else from role_name
    external_id = "..."        # optional
    regions = ["cn-beijing"]   # optional

Anything else is refused: a malformed file, an unknown key (with the nearest valid one), a
missing or duplicate ``id``, a value of the wrong type, a ``role_arn`` of another account. Each
``ConfigError`` names the file, the line (TOML syntax errors: tomllib's; the rest: a scan of the
file's keys and table headers) and the fix, before anything is sent.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scanner.eas.endpoints import validate_region
from scanner.errors import ConfigError
from scanner.org.resourcemanager import DirectoryAccount
from scanner.org.sts import (
    DEFAULT_ROLE_NAME,
    parse_role_arn,
    role_arn,
    validate_account_id,
    validate_external_id,
    validate_role_name,
)

__all__ = [
    "ACCOUNT_KEYS",
    "DEFAULTS_KEYS",
    "AccountSpec",
    "AccountTarget",
    "AccountsFile",
    "MemberSelection",
    "load_accounts_file",
    "parse_accounts",
    "select_members",
]

DEFAULTS_KEYS: Final = ("external_id", "regions", "role_name")
ACCOUNT_KEYS: Final = ("external_id", "id", "name", "regions", "role_arn")
_TOP_KEYS: Final = ("account", "defaults")


@dataclass(frozen=True, slots=True)
class AccountTarget:
    """One account to scan: whose role to assume, and where (``regions`` None: the scan's)."""

    account_id: str
    role_arn: str
    name: str | None = None
    external_id: str | None = None
    regions: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return (
            f"AccountTarget(account_id={self.account_id!r}, name={self.name!r}, role_arn={self.role_arn!r}, "
            f"external_id={'set' if self.external_id else None}, regions={self.regions!r})"
        )


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One ``[[account]]`` table, as written (``line``: where its header is)."""

    account_id: str
    name: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    regions: tuple[str, ...] | None = None
    line: int | None = None

    def __repr__(self) -> str:
        return (
            f"AccountSpec(account_id={self.account_id!r}, name={self.name!r}, role_arn={self.role_arn!r}, "
            f"external_id={'set' if self.external_id else None}, regions={self.regions!r}, line={self.line})"
        )


@dataclass(frozen=True, slots=True)
class AccountsFile:
    """A parsed accounts file: its ``[defaults]`` and its accounts, in file order."""

    source: str
    accounts: tuple[AccountSpec, ...]
    role_name: str | None = None
    external_id: str | None = None
    regions: tuple[str, ...] | None = None

    def targets(
        self, *, role_name: str | None = None, external_id: str | None = None
    ) -> tuple[AccountTarget, ...]:
        """The accounts with defaults applied: an account's own value, else the file's
        ``[defaults]``, else the arguments here (the command line's ``--role-name`` /
        ``--external-id``), else ``ResourceDirectoryAccountAccessRole`` and no external id."""
        default_role = self.role_name or (validate_role_name(role_name) if role_name else DEFAULT_ROLE_NAME)
        default_external = self.external_id or (validate_external_id(external_id) if external_id else None)
        return tuple(
            AccountTarget(
                account_id=spec.account_id,
                role_arn=spec.role_arn or role_arn(spec.account_id, default_role),
                name=spec.name,
                external_id=spec.external_id or default_external,
                regions=spec.regions if spec.regions is not None else self.regions,
            )
            for spec in self.accounts
        )

    def __repr__(self) -> str:
        return f"AccountsFile({self.source!r}, {len(self.accounts)} accounts)"


@dataclass(frozen=True, slots=True)
class MemberSelection:
    """Resource Directory members sorted out for a scan.

    ``targets``: the members to scan. ``skipped``: members not in a scannable status (the
    summary's ``skipped_accounts``). ``excluded``: ids left out by ``exclude``. ``missing``:
    ids of ``include`` that are not members (the caller decides: warn, or refuse).
    """

    targets: tuple[AccountTarget, ...]
    skipped: tuple[DirectoryAccount, ...]
    excluded: tuple[str, ...]
    missing: tuple[str, ...]


def select_members(
    accounts: Sequence[DirectoryAccount],
    *,
    role_name: str = DEFAULT_ROLE_NAME,
    external_id: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> MemberSelection:
    """The members to scan (``--include-accounts`` / ``--exclude-accounts``), in listing order.

    ``include`` None means every member; an id in both ``include`` and ``exclude`` is excluded.
    Ids are checked (``ConfigError``) before anything is selected.
    """
    validate_role_name(role_name)
    if external_id is not None:
        validate_external_id(external_id)
    wanted = (
        None if include is None else {validate_account_id(i, what="included account id") for i in include}
    )
    unwanted = {validate_account_id(i, what="excluded account id") for i in exclude}
    targets: list[AccountTarget] = []
    skipped: list[DirectoryAccount] = []
    excluded: list[str] = []
    for account in accounts:
        if account.account_id in unwanted:
            excluded.append(account.account_id)
        elif wanted is not None and account.account_id not in wanted:
            continue
        elif not account.scannable:
            skipped.append(account)
        else:
            targets.append(
                AccountTarget(
                    account_id=account.account_id,
                    role_arn=role_arn(account.account_id, role_name),
                    name=account.display_name or None,
                    external_id=external_id,
                )
            )
    members = {account.account_id for account in accounts}
    return MemberSelection(
        targets=tuple(targets),
        skipped=tuple(skipped),
        excluded=tuple(excluded),
        missing=tuple(sorted((wanted or set()) - members - unwanted)),
    )


# --- where things are in the file ----------------------------------------------------------------

_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]")
_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


class _Lines:
    """Line numbers of table headers and keys, by a line scan (tomllib does not report them)."""

    def __init__(self, text: str) -> None:
        self.count = text.count("\n") + 1
        self.tables: dict[tuple[str, int], int] = {}  # (table, array index or 0) -> header line
        self.keys: dict[tuple[str, int, str], int] = {}
        self.top_keys: dict[str, int] = {}
        table, index, accounts = "", 0, 0
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header is not None:
                table = header.group(2).strip().strip("\"'")
                if header.group(1) == "[[" and table == "account":
                    index, accounts = accounts, accounts + 1
                else:
                    index = 0
                self.tables.setdefault((table, index), number)
                self.top_keys.setdefault(table.split(".")[0], number)
                continue
            key = _KEY.match(line)
            if key is not None:
                name = key.group(1).strip("\"'")
                if table:
                    self.keys.setdefault((table, index, name), number)
                else:
                    self.top_keys.setdefault(name, number)

    def key(self, table: str, index: int, name: str) -> int | None:
        return self.keys.get((table, index, name)) or self.tables.get((table, index))


class _Reader:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = _Lines(text)

    def error(self, line: int | None, problem: str, fix: str) -> ConfigError:
        where = f"{self.source}, line {line}" if line else self.source
        return ConfigError(f"{where}: {problem}. {fix}")

    def check_keys(self, table: Mapping[str, Any], valid: Sequence[str], name: str, index: int) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(
                    self.lines.key(name, index, key) if name else self.lines.top_keys.get(key),
                    f"unknown key {key!r}"
                    + (f" in [{name}]" if name == "defaults" else " in [[account]]" if name else ""),
                    f"{hint}Valid keys: {', '.join(valid)}",
                )

    def text(
        self, table: Mapping[str, Any], key: str, name: str, index: int, line_of: int | None
    ) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                self.lines.key(name, index, key) or line_of,
                f"{key} must be a non-empty string, got {_describe(value)}",
                f'Write it in quotes: {key} = "..."',
            )
        return value

    def regions(self, table: Mapping[str, Any], name: str, index: int) -> tuple[str, ...] | None:
        value = table.get("regions")
        if value is None:
            return None
        line = self.lines.key(name, index, "regions")
        if not isinstance(value, list) or not value:
            raise self.error(
                line,
                f"regions must be a non-empty list of region ids, got {_describe(value)}",
                'Write e.g. regions = ["cn-hangzhou", "cn-shanghai"]',
            )
        out: list[str] = []
        for region in value:
            try:
                out.append(validate_region(region))
            except ConfigError as exc:
                raise self.error(line, str(exc), 'Write e.g. regions = ["cn-hangzhou"]') from None
        if len(set(out)) != len(out):
            raise self.error(line, "regions lists a region twice", "Remove the repeated region")
        return tuple(out)

    def checked(self, line: int | None, fix: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ConfigError as exc:
            raise self.error(line, str(exc), fix) from None


def _describe(value: object) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} ({value!r})" if not isinstance(value, dict | list) else kind


def parse_accounts(text: str, *, source: str = "<accounts>") -> AccountsFile:
    """Parse the text of an accounts file; ``source`` names it in errors."""
    reader = _Reader(source, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _TOML_AT.search(message)
        error_line = int(at.group(1)) if at else reader.lines.count
        problem = _TOML_AT.sub("", message).replace("(at end of document)", "").strip()
        raise reader.error(
            error_line,
            f"not valid TOML: {problem}",
            "Fix the syntax (https://toml.io); see the example in the README",
        ) from None
    reader.check_keys(data, _TOP_KEYS, "", 0)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise reader.error(
            reader.lines.top_keys.get("defaults"), "defaults must be a table", "Write [defaults]"
        )
    reader.check_keys(defaults, DEFAULTS_KEYS, "defaults", 0)
    defaults_line = reader.lines.tables.get(("defaults", 0))
    role_name = reader.text(defaults, "role_name", "defaults", 0, defaults_line)
    if role_name is not None:
        reader.checked(
            reader.lines.key("defaults", 0, "role_name"), "Fix the role name", validate_role_name, role_name
        )
    external_id = reader.text(defaults, "external_id", "defaults", 0, defaults_line)
    if external_id is not None:
        reader.checked(
            reader.lines.key("defaults", 0, "external_id"),
            "Fix the external id",
            validate_external_id,
            external_id,
        )
    default_regions = reader.regions(defaults, "defaults", 0)

    tables = data.get("account")
    if tables is None:
        raise reader.error(
            None,
            "no [[account]] table",
            'Add one per account to scan: [[account]] then id = "1234567890123456"',
        )
    if not isinstance(tables, list):
        raise reader.error(
            reader.lines.top_keys.get("account"),
            "account must be an array of tables",
            "Write [[account]] (two brackets) before each account",
        )
    specs: list[AccountSpec] = []
    seen: dict[str, int | None] = {}
    for index, table in enumerate(tables):
        line = reader.lines.tables.get(("account", index))
        if not isinstance(table, dict):
            raise reader.error(
                line, "an account entry is not a table", "Write [[account]] before each account"
            )
        reader.check_keys(table, ACCOUNT_KEYS, "account", index)
        if "id" not in table:
            raise reader.error(
                line,
                f"[[account]] number {index + 1} has no id",
                'Add the account\'s UID: id = "1234567890123456"',
            )
        id_line = reader.lines.key("account", index, "id")
        raw_id = table["id"]
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raise reader.error(
                id_line,
                f"id must be a string, got the number {raw_id}",
                f'Write it in quotes: id = "{raw_id}"',
            )
        account_id = reader.checked(id_line, "Write the account's UID in quotes", validate_account_id, raw_id)
        if account_id in seen:
            first = seen[account_id]
            raise reader.error(
                id_line,
                f"account {account_id} is listed twice" + (f" (first on line {first})" if first else ""),
                "Remove one of the two [[account]] tables",
            )
        seen[account_id] = id_line
        arn = reader.text(table, "role_arn", "account", index, line)
        if arn is not None:
            arn_line = reader.lines.key("account", index, "role_arn")
            arn_account: str = reader.checked(
                arn_line, "Write acs:ram::ACCOUNT_ID:role/ROLE_NAME", parse_role_arn, arn
            )[0]
            if arn_account != account_id:
                raise reader.error(
                    arn_line,
                    f"role_arn is a role of account {arn_account}, not of {account_id}",
                    f"Use a role of account {account_id}, or remove role_arn to use role_name",
                )
        ext = reader.text(table, "external_id", "account", index, line)
        if ext is not None:
            reader.checked(
                reader.lines.key("account", index, "external_id"),
                "Fix the external id",
                validate_external_id,
                ext,
            )
        specs.append(
            AccountSpec(
                account_id=account_id,
                name=reader.text(table, "name", "account", index, line),
                role_arn=arn,
                external_id=ext,
                regions=reader.regions(table, "account", index),
                line=line,
            )
        )
    return AccountsFile(
        source=source,
        accounts=tuple(specs),
        role_name=role_name,
        external_id=external_id,
        regions=default_regions,
    )


def load_accounts_file(path: str | Path) -> AccountsFile:
    """Read and parse an accounts file (``ConfigError`` when it cannot be read or is wrong)."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file. Check the path given to --accounts") from None
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot be read ({exc.strerror}). Check the path and its permissions"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}, line {line}: not UTF-8 text. Save the file as UTF-8") from None
    return parse_accounts(text, source=name)
