"""What ``Scanner(accounts=...)`` accepts: an ``Organization``, an accounts file, or ``Account`` s.

::

    Scanner(accounts=Organization(role_name="EasInventoryReader"))         # every RD member
    Scanner(accounts=Organization(folder="fd-xxxx", exclude=["1234..."]))  # one folder, minus one
    Scanner(accounts="accounts.toml")                                      # an accounts file
    Scanner(accounts=[Account(id="1234567890123456", name="prod")])        # a list

Everything is validated when it is built (``ConfigError``), before any request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scanner.eas.endpoints import validate_region
from scanner.errors import ConfigError
from scanner.org.accounts import AccountTarget, load_accounts_file
from scanner.org.sts import (
    DEFAULT_ROLE_NAME,
    parse_role_arn,
    role_arn,
    validate_account_id,
    validate_external_id,
    validate_role_name,
)

__all__ = ["Account", "AccountsSource", "Organization", "resolve_accounts"]


def _ids(value: Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"{what} must be a list of account ids, got the string {value!r}")
    return tuple(validate_account_id(i, what=what) for i in value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    """Every member of the caller's Resource Directory (ResourceManager ``ListAccounts``), or of
    one ``folder`` (``ListAccountsForParent``); ``include`` / ``exclude``: account ids. Members not
    in a success status are skipped (the summary's ``skipped_accounts``)."""

    role_name: str = DEFAULT_ROLE_NAME
    folder: str | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    external_id: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate_role_name(self.role_name)
        if self.folder is not None and (not isinstance(self.folder, str) or not self.folder.strip()):
            raise ConfigError(f"folder must be a non-empty folder id, got {self.folder!r}")
        if self.external_id is not None:
            validate_external_id(self.external_id)
        object.__setattr__(self, "include", _ids(self.include, "included account id"))
        object.__setattr__(self, "exclude", _ids(self.exclude, "excluded account id") or ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """One account to scan: its role (``role_arn``, else ``role_name`` in it, by default
    ``ResourceDirectoryAccountAccessRole``), an optional ``name`` and ``external_id``, and its
    ``regions`` (None: the scan's)."""

    id: str
    role_arn: str | None = None
    role_name: str | None = None
    name: str | None = None
    external_id: str | None = field(default=None, repr=False)
    regions: Sequence[str] | None = None

    def __post_init__(self) -> None:
        validate_account_id(self.id)
        if self.role_arn is not None:
            owner, _ = parse_role_arn(self.role_arn)
            if owner != self.id:
                raise ConfigError(
                    f"role_arn {self.role_arn!r} is a role of account {owner}, not of {self.id}"
                )
            if self.role_name is not None:
                raise ConfigError("give an Account's role_arn or its role_name, not both")
        if self.role_name is not None:
            validate_role_name(self.role_name)
        if self.external_id is not None:
            validate_external_id(self.external_id)
        if self.regions is not None:
            if isinstance(self.regions, str) or not self.regions:
                raise ConfigError(f"an Account's regions must be a non-empty list, got {self.regions!r}")
            object.__setattr__(self, "regions", tuple(validate_region(r) for r in self.regions))

    def target(self) -> AccountTarget:
        return AccountTarget(
            account_id=self.id,
            role_arn=self.role_arn or role_arn(self.id, self.role_name or DEFAULT_ROLE_NAME),
            name=self.name,
            external_id=self.external_id,
            regions=tuple(self.regions) if self.regions is not None else None,
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, role_name: str | None = None, external_id: str | None = None
    ) -> tuple[Account, ...]:
        """The accounts of an accounts file (``ConfigError`` naming the file, line and fix).
        ``role_name`` / ``external_id`` apply where neither the account nor ``[defaults]`` says."""
        targets = load_accounts_file(Path(path)).targets(role_name=role_name, external_id=external_id)
        return tuple(
            cls(
                id=t.account_id,
                role_arn=t.role_arn,
                name=t.name,
                external_id=t.external_id,
                regions=t.regions,
            )
            for t in targets
        )


AccountsSource = Organization | str | os.PathLike[str] | Sequence[Account]


def resolve_accounts(source: AccountsSource) -> Organization | tuple[Account, ...]:
    """``Scanner(accounts=...)``'s argument, checked: a path is read now."""
    if isinstance(source, Organization):
        return source
    if isinstance(source, str | os.PathLike):
        return Account.load(source)
    if isinstance(source, Sequence):
        given: tuple[object, ...] = tuple(source)
        accounts = tuple(a for a in given if isinstance(a, Account))
        if not accounts or len(accounts) != len(given):
            raise ConfigError(
                "accounts must be an Organization, an accounts file path, or a non-empty list of Account"
            )
        seen: set[str] = set()
        for account in accounts:
            if account.id in seen:
                raise ConfigError(f"account {account.id} is listed twice")
            seen.add(account.id)
        return accounts
    raise ConfigError(
        f"accounts must be an Organization, an accounts file path, or a list of Account, got {source!r}"
    )
